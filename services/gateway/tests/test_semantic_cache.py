"""The semantic layer of the response cache (issue 17 point 3): the real all-MiniLM-L6-v2 encoder, the gateway's real
Redis path, a FAKE engine that counts upstream calls and a FAKE guardrails service. What a close rewording reuses,
for whom, and what never reaches it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.gateway.cache import ResponseCache
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes_config import CacheFields, SemanticCacheFields
from services.gateway.routing import RouteConfigError, RouteTable
from services.gateway.semantic_cache import compatible, fingerprint, question
from services.gateway.tests.harness import MODEL, Harness, harness
from services.gateway.tests.test_cache import BLOCK

SEMANTIC = {"cache": {"enabled": True, "semantic": {"enabled": True}}}
ASKED = "How do I reset my password?"
REWORDED = "How can I reset my password?"  # cosine 0.99 with ASKED
OTHER = "How do I change my username?"  # cosine 0.50 with ASKED


def _user(text: str, system: str | None = None) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": text}]


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "harness-inference")
    with harness(tmp_path, route=SEMANTIC) as h:
        yield h


def _calls(h: Harness) -> int:
    return len(h.engine.requests)


def _wait_metric(h: Harness, name: str, count: float, timeout_s: float = 10.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if h.metric(name, **labels) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{name}{labels} did not reach {count}")


def _indexed(h: Harness, count: float = 1) -> None:
    """Wait until `count` questions were indexed (stored, then indexed, after the answer was sent)."""
    _wait_metric(h, "llmops_gateway_cache_semantic_writes_total", count, model=MODEL, outcome="indexed")


def _lookups(h: Harness, outcome: str, layer: str = "semantic") -> float:
    return h.metric("llmops_gateway_cache_lookups_total", model=MODEL, layer=layer, outcome=outcome)


def _ask(h: Harness, key: str, text: str, **body: Any) -> Any:
    return h.chat(key, temperature=0, messages=_user(text), **body)


def test_a_rewording_hits_and_says_semantic_with_its_similarity(gw: Harness) -> None:
    """A close rewording of a stored question is answered from the cache: no upstream call, the stored answer,
    `x-llmops-cache: hit` with `x-llmops-cache-match: semantic; similarity=...`, metrics labelled semantic."""
    key, _ = gw.key()
    first = _ask(gw, key, ASKED)
    assert first.headers["x-llmops-cache"] == "miss" and _calls(gw) == 1
    _indexed(gw)
    second = _ask(gw, key, REWORDED)
    assert second.status_code == 200, second.text
    assert second.headers["x-llmops-cache"] == "hit" and _calls(gw) == 1
    match, similarity = second.headers["x-llmops-cache-match"].split("; similarity=")
    assert match == "semantic" and 0.94 <= float(similarity) <= 1.0
    assert second.json() == first.json()
    assert float(second.headers["x-llmops-cost-usd"]) == 0.0
    assert gw.event(second.headers["x-request-id"])["cached"] is True
    assert _lookups(gw, "hit") == 1 and _lookups(gw, "miss", layer="exact") == 2
    assert _lookups(gw, "hit", layer="exact") == 0
    # The same words again are an exact hit, and say so.
    assert _ask(gw, key, ASKED).headers["x-llmops-cache-match"] == "exact"


def test_a_streamed_rewording_is_replayed_from_the_stored_answer(gw: Harness) -> None:
    """A streamed request may hit too: the stored whole answer replays as SSE, marked semantic."""
    key, _ = gw.key()
    _ask(gw, key, ASKED)
    _indexed(gw)
    response = _ask(gw, key, REWORDED, stream=True)
    assert response.status_code == 200 and response.headers["x-llmops-cache"] == "hit" and _calls(gw) == 1
    assert response.headers["x-llmops-cache-match"].startswith("semantic; similarity=")
    frames = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]" and orjson.loads(frames[0])["choices"][0]["delta"]["content"] == "pong"


def test_a_different_question_misses(gw: Harness) -> None:
    """Another question on the same topic is below the threshold: it goes upstream."""
    key, _ = gw.key()
    _ask(gw, key, ASKED)
    _indexed(gw)
    response = _ask(gw, key, OTHER)
    assert response.headers["x-llmops-cache"] == "miss" and "x-llmops-cache-match" not in response.headers
    assert _calls(gw) == 2 and _lookups(gw, "miss") == 2  # the first question's lookup found nothing indexed
    assert gw.metric("llmops_gateway_cache_semantic_similarity_count", model=MODEL) == 1


def test_another_team_never_hits(gw: Harness) -> None:
    """Tenant-scoped: the rewording from another team's key misses, although the first team's entry is indexed;
    a second key of the first team hits."""
    key, _ = gw.key("t1")
    teammate, _ = gw.key("t1")
    stranger, _ = gw.key("t2")
    _ask(gw, key, ASKED)
    _indexed(gw)
    assert _ask(gw, stranger, REWORDED).headers["x-llmops-cache"] == "miss" and _calls(gw) == 2
    assert _ask(gw, teammate, REWORDED).headers["x-llmops-cache"] == "hit" and _calls(gw) == 2


def test_a_new_model_version_misses(gw: Harness) -> None:
    """The served version is part of the context: after a promotion the rewording misses."""
    key, _ = gw.key()
    gw.client.app.state.proxy.catalogue = SimpleNamespace(versions={MODEL: "1"})  # type: ignore[attr-defined]
    _ask(gw, key, ASKED)
    _indexed(gw)
    assert _ask(gw, key, REWORDED).headers["x-llmops-cache"] == "hit"
    gw.client.app.state.proxy.catalogue.versions[MODEL] = "2"  # type: ignore[attr-defined]
    response = _ask(gw, key, REWORDED)
    assert response.headers["x-llmops-cache"] == "miss" and response.headers["x-llmops-model-version"] == "2"
    assert _calls(gw) == 2


def test_only_the_last_user_message_may_differ(gw: Harness) -> None:
    """Another system prompt, another bound or another earlier turn is another context: no semantic hit."""
    key, _ = gw.key()
    _ask(gw, key, ASKED)
    _indexed(gw)
    assert gw.chat(key, temperature=0, messages=_user(REWORDED, "Answer in French.")).headers["x-llmops-cache"] == (
        "miss"
    )
    assert _ask(gw, key, REWORDED, max_tokens=7).headers["x-llmops-cache"] == "miss"
    earlier = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}, *_user(REWORDED)]
    assert gw.chat(key, temperature=0, messages=earlier).headers["x-llmops-cache"] == "miss"
    assert _calls(gw) == 4
    assert _ask(gw, key, REWORDED, user="end-user-3").headers["x-llmops-cache"] == "hit"  # `user` changes nothing


def test_a_sampling_request_never_hits_nor_embeds(gw: Harness) -> None:
    """Temperature > 0 is not cacheable: no lookup of either layer, nothing embedded, nothing indexed."""
    key, _ = gw.key()
    _ask(gw, key, ASKED)
    _indexed(gw)
    embedded = gw.metric("llmops_gateway_cache_embed_seconds_count")
    for _ in range(2):
        response = gw.chat(key, temperature=0.7, messages=_user(REWORDED))
        assert response.status_code == 200 and "x-llmops-cache" not in response.headers
    assert _calls(gw) == 3 and _lookups(gw, "hit") == 0
    assert gw.metric("llmops_gateway_cache_embed_seconds_count") == embedded


def test_a_blocked_input_never_reaches_the_cache(gw: Harness) -> None:
    """The input check runs first: a blocked rewording is refused; it is neither embedded nor looked up."""
    key, _ = gw.key()
    _ask(gw, key, ASKED)
    _indexed(gw)
    embedded = gw.metric("llmops_gateway_cache_embed_seconds_count")
    gw.guard._check = lambda index, text: ("block", None, [BLOCK])  # type: ignore[method-assign]
    response = _ask(gw, key, REWORDED)
    assert response.status_code == 400 and response.json()["error"]["code"] == "guardrail_blocked"
    assert "x-llmops-cache" not in response.headers and _calls(gw) == 1
    assert gw.metric("llmops_gateway_cache_embed_seconds_count") == embedded
    assert _lookups(gw, "hit") == 0 and _lookups(gw, "miss") == 1  # the first question's own lookup only


def test_the_layer_is_off_unless_the_route_enables_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A route with the exact cache only: a rewording misses, and the encoder is never loaded."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path, route={"cache": {"enabled": True}}) as h:
        key, _ = h.key()
        _ask(h, key, ASKED)
        _wait_metric(h, "llmops_gateway_cache_stores_total", 1, model=MODEL, outcome="stored")
        assert _ask(h, key, REWORDED).headers["x-llmops-cache"] == "miss"
        assert _lookups(h, "miss") == 0
        assert h.client.app.state.proxy.cache.semantic._loading is None  # type: ignore[attr-defined]


def test_the_semantic_section_is_strict() -> None:
    """A typo or an out-of-range threshold stops the gateway at start."""
    doc: dict[str, Any] = {
        "models": [{"name": "m", "deployments": [{"url": "http://x/v1"}], "cache": {"semantic": {"treshold": 0.9}}}]
    }
    with pytest.raises(RouteConfigError, match=r"semantic: unknown key 'treshold' \(did you mean 'threshold'\?\)"):
        RouteTable.from_dict(doc)
    doc["models"][0]["cache"]["semantic"] = {"threshold": 0.2}
    with pytest.raises(RouteConfigError, match="threshold"):
        RouteTable.from_dict(doc)


def test_question_takes_only_a_last_user_text() -> None:
    """The layer serves a last user message of text (string or text parts); anything else is left to the exact
    layer alone."""
    assert question({"messages": _user("hi")}) == ("hi", [{"role": "user", "content": None}])
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert question({"messages": [{"role": "user", "content": parts}]}) is not None
    image = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    for messages in ([], [{"role": "assistant", "content": "x"}], [{"role": "user", "content": image}], _user(" ")):
        assert question({"messages": messages}) is None


def test_the_lexical_guards() -> None:
    """Numbers must match, and the same words in another order never share an answer; wording may change."""
    assert not compatible(fingerprint("What is 12 times 12?"), fingerprint("What is 12 times 13?"))
    convert = "How do I convert a string to an integer in Java?"
    assert not compatible(fingerprint(convert), fingerprint("How do I convert an integer to a string in Java?"))
    assert compatible(fingerprint(ASKED), fingerprint(REWORDED))
    assert compatible(fingerprint("What is 2 + 2?"), fingerprint("what is 2 + 2"))


class _FakeEncoder:
    """Vectors by text (unit length), for tests of the index itself."""

    max_seq_length = 16

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = {t: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for t, v in vectors.items()}
        self.encoded: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return np.vstack([self.vectors[t] for t in texts])

    def tokens(self, text: str) -> tuple[int, ...]:
        return tuple(hash(word) for word in text.split())


def _cache(redis: Any, prefix: str, encoder: _FakeEncoder | None = None) -> ResponseCache:
    cache = ResponseCache(redis, prefix, GatewayMetrics(CollectorRegistry()), team_max_bytes=100_000, checked=False)
    if encoder is not None:
        cache.semantic.encoder_factory = lambda: encoder
    return cache


def _chat(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": _user(text), "temperature": 0}


async def test_the_index_is_bounded_per_team_and_model_and_forgets_gone_entries(redis: Redis, prefix: str) -> None:
    """`max_entries` questions per team and model version: indexing past it drops the oldest question (its exact
    entry stays); a vector whose entry is gone is deleted when a lookup meets it; another team is untouched."""
    encoder = _FakeEncoder({"q0": [1, 0, 0], "q1": [0, 1, 0], "q2": [0, 0, 1], "q0b": [1, 0.01, 0]})
    cache = _cache(redis, prefix, encoder)
    policy = CacheFields(enabled=True, ttl_s=60, semantic=SemanticCacheFields(enabled=True, max_entries=2))
    body = orjson.dumps({"choices": [{"message": {"content": "answer"}}]})
    for team in ("a", "b"):
        for text in ("q0", "q1", "q2"):
            key = cache.key(team, "chat", _chat(text), "v")
            probe = cache.semantic_probe(team, "chat", _chat(text), "v", policy)
            assert probe is not None
            await cache.put_and_index(key, team, MODEL, body, None, None, policy, probe)
    space = f"{prefix}:{{t:a}}:cache:s:"
    assert [await redis.zcard(k) async for k in redis.scan_iter(match=space + "*")] == [2]
    probe = cache.semantic_probe("a", "chat", _chat("q0b"), "v", policy)
    assert probe is not None and await cache.semantic_get(probe, MODEL) is None  # q0 left the index
    assert await cache.get(cache.key("a", "chat", _chat("q0"), "v"), MODEL) is not None  # its entry did not
    # An entry gone (expired, evicted for bytes): its vector serves nothing and goes.
    encoder.vectors["q1b"] = encoder.vectors["q1"]
    await redis.delete(cache.key("a", "chat", _chat("q1"), "v"))
    probe = cache.semantic_probe("a", "chat", _chat("q1b"), "v", policy)
    assert probe is not None and await cache.semantic_get(probe, MODEL) is None
    assert await redis.hlen(probe.context) == 1  # q2 only
    probe = cache.semantic_probe("b", "chat", _chat("q1b"), "v", policy)
    assert probe is not None
    hit = await cache.semantic_get(probe, MODEL)
    assert hit is not None and hit.similarity == pytest.approx(1.0, abs=1e-3)
    assert hit.match_header.startswith("semantic; similarity=")


async def test_a_text_longer_than_the_encoders_window_is_not_embedded(redis: Redis, prefix: str) -> None:
    """The encoder sees only its window: a longer text would look like any other with the same head, so it misses."""
    encoder = _FakeEncoder({})
    cache = _cache(redis, prefix, encoder)
    policy = CacheFields(enabled=True, semantic=SemanticCacheFields(enabled=True))
    long_text = " ".join(["word"] * 20)
    probe = cache.semantic_probe("a", "chat", _chat(long_text), "v", policy)
    assert probe is not None and await cache.semantic_get(probe, MODEL) is None
    assert encoder.encoded == []


class _BrokenRedis:
    """A Redis whose every command fails."""

    def register_script(self, _: str) -> Any:
        async def run(**_: Any) -> Any:
            raise RedisConnectionError("down")

        return run

    async def get(self, _: str) -> Any:
        raise RedisConnectionError("down")

    async def hgetall(self, _: str) -> Any:
        raise RedisConnectionError("down")


async def test_a_redis_failure_is_a_miss_and_a_skipped_index() -> None:
    """The layer never fails a request: a read error is a semantic miss counted as error; indexing is skipped."""
    encoder = _FakeEncoder({"q": [1, 0]})
    cache = _cache(_BrokenRedis(), "p", encoder)
    policy = CacheFields(enabled=True, semantic=SemanticCacheFields(enabled=True))
    probe = cache.semantic_probe("a", "chat", _chat("q"), "v", policy)
    assert probe is not None and await cache.semantic_get(probe, MODEL) is None
    assert not await cache.semantic.add(probe, "k", MODEL, 60, policy.semantic)
    registry = cache.metrics.registry
    labels = {"model": MODEL, "layer": "semantic", "outcome": "error"}
    assert registry.get_sample_value("llmops_gateway_cache_lookups_total", labels) == 1
    written = {"model": MODEL, "outcome": "error"}
    assert registry.get_sample_value("llmops_gateway_cache_semantic_writes_total", written) == 1


async def test_an_encoder_that_cannot_load_is_a_miss() -> None:
    """A missing model package or runtime: the layer misses, the gateway serves on."""

    def broken() -> Any:
        raise ModuleNotFoundError("onnxruntime")

    cache = _cache(_BrokenRedis(), "p")
    cache.semantic.encoder_factory = broken
    policy = CacheFields(enabled=True, semantic=SemanticCacheFields(enabled=True))
    probe = cache.semantic_probe("a", "chat", _chat("q"), "v", policy)
    assert probe is not None and await cache.semantic_get(probe, MODEL) is None
    labels = {"model": MODEL, "layer": "semantic", "outcome": "miss"}
    assert cache.metrics.registry.get_sample_value("llmops_gateway_cache_lookups_total", labels) == 1


async def test_a_wording_asked_again_is_not_embedded_again(redis: Redis, prefix: str) -> None:
    """The vectors of recent wordings are remembered by word pieces (bounded): asking again reuses the vector; past
    the bound the oldest is embedded anew; `remembered=0` embeds every time."""
    policy = CacheFields(enabled=True, semantic=SemanticCacheFields(enabled=True))

    async def embedded(remembered: int, texts: list[str]) -> list[str]:
        encoder = _FakeEncoder({"q0": [1, 0], "q1": [0, 1]})
        cache = _cache(redis, prefix, encoder)
        cache.semantic.remembered = remembered
        for text in texts:
            probe = cache.semantic_probe("a", "chat", _chat(text), "v", policy)
            assert probe is not None
            await cache.semantic_get(probe, MODEL)
        return encoder.encoded

    assert await embedded(4096, ["q0", "q0", "q1", "q0"]) == ["q0", "q1"]
    assert await embedded(1, ["q0", "q1", "q1", "q0"]) == ["q0", "q1", "q0"]  # the bound pushed q0 out
    assert await embedded(0, ["q1", "q1"]) == ["q1", "q1"]


async def test_vectors_of_another_encoder_are_never_compared(redis: Redis, prefix: str) -> None:
    """A question indexed by a gateway on the float encoder is not found by one on the int8 encoder (nor the reverse):
    their vectors differ slightly, and the threshold is calibrated per encoder."""
    policy = CacheFields(enabled=True, ttl_s=60, semantic=SemanticCacheFields(enabled=True))
    body = orjson.dumps({"choices": [{"message": {"content": "answer"}}]})
    caches = {}
    for quantized in (True, False):
        cache = caches[quantized] = _cache(redis, prefix, _FakeEncoder({"q": [1, 0], "q again": [1, 0.01]}))
        cache.semantic.quantized = quantized
    probe = caches[False].semantic_probe("a", "chat", _chat("q"), "v", policy)
    assert probe is not None
    await caches[False].put_and_index(
        caches[False].key("a", "chat", _chat("q"), "v"), "a", MODEL, body, None, None, policy, probe
    )
    for quantized, found in ((True, False), (False, True)):
        probe = caches[quantized].semantic_probe("a", "chat", _chat("q again"), "v", policy)
        assert probe is not None
        assert (await caches[quantized].semantic_get(probe, MODEL) is not None) is found
