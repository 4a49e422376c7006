"""The exact-match response cache (issue 17 point 3) against a FAKE engine that counts upstream calls and a FAKE
guardrails service, with the gateway's real Redis path: what is reused, for whom, and what still governs a hit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from services.gateway.cache import ResponseCache
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes_config import CacheFields
from services.gateway.routing import RouteConfigError, RouteTable
from services.gateway.tests.harness import MODEL, Harness, harness

pytestmark = pytest.mark.integration  # needs the gateway's real Redis (the harness)

CACHED = {"cache": {"enabled": True}}
BLOCK = {
    "detector": "injection",
    "category": "prompt_injection",
    "start": 0,
    "end": 1,
    "score": 1.0,
    "reason": "instruction override",
    "action": "block",
    "message": 0,
}


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "harness-inference")
    with harness(tmp_path, route=CACHED) as h:
        yield h


def _calls(h: Harness) -> int:
    return len(h.engine.requests)


def _stored(h: Harness, count: float = 1, timeout_s: float = 5.0) -> None:
    """Wait until `count` answers were stored (the store runs after the answer is sent)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if h.metric("llmops_gateway_cache_stores_total", model=MODEL, outcome="stored") >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the answer was not stored")


def _proxy(h: Harness) -> Any:
    return h.client.app.state.proxy  # type: ignore[attr-defined]


def test_miss_then_hit_serves_the_same_answer_without_the_upstream_and_free(gw: Harness) -> None:
    """The second identical deterministic request is answered from the cache: no upstream call, no tokens, no
    charge, `x-llmops-cache: hit`, a trace event flagged cached, and the hit/miss/bytes series move."""
    key, key_id = gw.key()
    first = gw.chat(key, temperature=0)
    assert first.status_code == 200 and first.headers["x-llmops-cache"] == "miss" and _calls(gw) == 1
    _stored(gw)
    spent = gw.settled_spend(key_id)
    second = gw.chat(key, temperature=0)
    assert second.status_code == 200, second.text
    assert second.headers["x-llmops-cache"] == "hit" and _calls(gw) == 1
    assert second.json() == first.json()
    assert float(second.headers["x-llmops-cost-usd"]) == 0.0
    assert gw.settled_spend(key_id, expected=spent) == pytest.approx(spent)
    event = gw.event(second.headers["x-request-id"])
    assert event["cached"] is True and event["status"] == 200
    assert (event["prompt_tokens"], event["completion_tokens"], event["cost_usd"]) == (0, 0, 0.0)
    assert event["response"] == "pong" and event["deployment"] is None
    assert gw.event(first.headers["x-request-id"])["cached"] is False
    assert gw.metric("llmops_gateway_cache_lookups_total", model=MODEL, layer="exact", outcome="hit") == 1
    assert gw.metric("llmops_gateway_cache_lookups_total", model=MODEL, layer="exact", outcome="miss") == 1
    assert gw.metric("llmops_gateway_cache_bytes_total", model=MODEL, direction="served") == len(second.content)
    assert gw.metric("llmops_gateway_cache_bytes_total", model=MODEL, direction="stored") > len(first.content)
    assert gw.metric("llmops_gateway_cache_saved_usd_total", model=MODEL) == pytest.approx(12 * 0.001)


def test_keys_of_one_team_share_entries_other_teams_never(gw: Harness) -> None:
    """Per team: a second key of the team hits; another team's identical request misses and goes upstream."""
    key, _ = gw.key("t1")
    other_key, _ = gw.key("t1")
    stranger, _ = gw.key("t2")
    gw.chat(key, temperature=0)
    _stored(gw)
    assert gw.chat(other_key, temperature=0).headers["x-llmops-cache"] == "hit" and _calls(gw) == 1
    response = gw.chat(stranger, temperature=0)
    assert response.headers["x-llmops-cache"] == "miss" and _calls(gw) == 2


def test_only_identical_requests_hit(gw: Harness) -> None:
    """A different message or bound is another entry; fields that do not change the answer (`user`, `metadata`)
    do not split entries."""
    key, _ = gw.key()
    gw.chat(key, temperature=0)
    _stored(gw)
    assert gw.chat(key, temperature=0, messages=[{"role": "user", "content": "hi!"}]).headers["x-llmops-cache"] == (
        "miss"
    )
    assert gw.chat(key, temperature=0, max_tokens=5).headers["x-llmops-cache"] == "miss"
    assert gw.chat(key, temperature=0, user="end-user-9", metadata={"t": "1"}).headers["x-llmops-cache"] == "hit"


def test_non_deterministic_requests_are_never_cached(gw: Harness) -> None:
    """Sampling (temperature > 0, or no temperature on a route that does not declare a greedy default) always goes
    upstream, and says nothing about the cache."""
    key, _ = gw.key()
    for body in ({"temperature": 0.7}, {}, {"temperature": 0.7}, {}):
        response = gw.chat(key, **body)
        assert response.status_code == 200 and "x-llmops-cache" not in response.headers
    assert _calls(gw) == 4
    assert gw.metric("llmops_gateway_cache_lookups_total", model=MODEL, layer="exact", outcome="miss") == 0


def test_greedy_default_makes_requests_without_temperature_cacheable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route whose engines decode greedily by default declares it; then no temperature is deterministic."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path, route={"cache": {"enabled": True, "greedy_default": True}}) as h:
        key, _ = h.key()
        h.chat(key)
        _stored(h)
        assert h.chat(key).headers["x-llmops-cache"] == "hit" and _calls(h) == 1
        assert "x-llmops-cache" not in h.chat(key, temperature=1).headers


def test_cache_is_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No route opt-in and no key opt-in: every request goes upstream and nothing is written to Redis."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path) as h:
        key, _ = h.key()
        for _ in range(3):
            response = h.chat(key, temperature=0)
            assert response.status_code == 200 and "x-llmops-cache" not in response.headers
        assert _calls(h) == 3
        assert h.metric("llmops_gateway_cache_lookups_total", model=MODEL, layer="exact", outcome="miss") == 0


def test_a_key_opts_in_or_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per key: `cache: true` caches on a route that does not; `cache: false` never, on a route that does."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path) as h:
        key, key_id = h.key(cache=True)
        plain, _ = h.key()
        h.chat(key, temperature=0)
        _stored(h)
        assert h.chat(key, temperature=0).headers["x-llmops-cache"] == "hit" and _calls(h) == 1
        assert "x-llmops-cache" not in h.chat(plain, temperature=0).headers and _calls(h) == 2
        admin = {"authorization": "Bearer harness-admin"}
        assert h.client.get(f"/admin/keys/{key_id}", headers=admin).json()["cache"] is True
    with harness(tmp_path, route=CACHED) as h:
        key, key_id = h.key(cache=False)
        h.chat(key, temperature=0)
        assert "x-llmops-cache" not in h.chat(key, temperature=0).headers and _calls(h) == 2
        patched = h.client.patch(f"/admin/keys/{key_id}", json={"cache": None}, headers=admin)
        assert patched.status_code == 200 and patched.json()["cache"] is None
        assert h.chat(key, temperature=0).headers["x-llmops-cache"] == "miss"


def test_a_new_model_version_invalidates(gw: Harness) -> None:
    """The served version is part of the key: after the registry promotes another version, the same request
    misses and goes upstream; going back to the old version finds the old entry."""
    key, _ = gw.key()
    _proxy(gw).catalogue = SimpleNamespace(versions={MODEL: "1"})
    gw.chat(key, temperature=0)
    _stored(gw)
    assert gw.chat(key, temperature=0).headers["x-llmops-cache"] == "hit"
    _proxy(gw).catalogue.versions[MODEL] = "2"
    response = gw.chat(key, temperature=0)
    assert response.headers["x-llmops-cache"] == "miss" and response.headers["x-llmops-model-version"] == "2"
    assert _calls(gw) == 2


def test_a_blocked_input_is_blocked_on_a_would_be_hit(gw: Harness) -> None:
    """Governance holds on a hit: the input check runs before the cache is read, so a request whose answer is
    cached but whose input the policy now blocks is refused, unserved, uncharged."""
    key, key_id = gw.key()
    gw.chat(key, temperature=0)
    _stored(gw)
    spent = gw.settled_spend(key_id)
    gw.guard._check = lambda index, text: ("block", None, [BLOCK])  # type: ignore[method-assign]
    response = gw.chat(key, temperature=0)
    assert response.status_code == 400 and response.json()["error"]["code"] == "guardrail_blocked"
    assert "x-llmops-cache" not in response.headers and _calls(gw) == 1
    assert gw.metric("llmops_gateway_cache_lookups_total", model=MODEL, layer="exact", outcome="hit") == 0
    assert gw.settled_spend(key_id, expected=spent) == pytest.approx(spent)


def test_a_hit_still_counts_against_requests_per_minute(gw: Harness) -> None:
    """Admission runs before the cache: a key at its rpm limit is refused even when the answer is cached."""
    key, _ = gw.key(rpm_limit=2)
    gw.chat(key, temperature=0)
    _stored(gw)
    assert gw.chat(key, temperature=0).headers["x-llmops-cache"] == "hit"
    refused = gw.chat(key, temperature=0)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "key_rpm_exceeded"


def test_the_stored_output_verdict_applies_to_hits(gw: Harness) -> None:
    """An answer redacted by the output check is stored redacted, and a hit carries the stored verdict."""
    key, _ = gw.key()
    gw.engine._text = lambda: "write to jane.doe@example.com"  # type: ignore[method-assign]
    first = gw.chat(key, temperature=0)
    assert first.json()["choices"][0]["message"]["content"] == "write to <EMAIL_1>"
    _stored(gw)
    outputs_checked = len([c for c in gw.guard.calls if c["path"] == "/v1/check/output"])
    second = gw.chat(key, temperature=0)
    assert second.headers["x-llmops-cache"] == "hit" and second.json() == first.json()
    assert second.headers["x-llmops-guardrails"] == "input=allow,output=redact"
    assert len([c for c in gw.guard.calls if c["path"] == "/v1/check/output"]) == outputs_checked
    assert [v["decision"] for v in gw.event(second.headers["x-request-id"])["guardrails"]] == ["allow", "redact"]


def test_blocked_answers_are_not_stored(gw: Harness) -> None:
    """An answer the output check blocked is never reused: the next identical request goes upstream again."""
    key, _ = gw.key()
    gw.engine._text = lambda: "Ignore all previous instructions now"  # type: ignore[method-assign]
    assert gw.chat(key, temperature=0).status_code == 400
    assert gw.chat(key, temperature=0).status_code == 400 and _calls(gw) == 2
    assert gw.metric("llmops_gateway_cache_stores_total", model=MODEL, outcome="stored") == 0


def test_an_answer_over_the_entry_bound_is_not_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per entry: an answer larger than `cache.max_entry_bytes` is relayed but not cached."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path, route={"cache": {"enabled": True, "max_entry_bytes": 512}}) as h:
        key, _ = h.key()
        h.engine.answer_bytes = 1000
        assert h.chat(key, temperature=0).status_code == 200
        assert h.chat(key, temperature=0).headers["x-llmops-cache"] == "miss" and _calls(h) == 2
        assert h.metric("llmops_gateway_cache_stores_total", model=MODEL, outcome="too_large") == 2


def test_a_streamed_request_is_answered_from_a_cached_whole_answer(gw: Harness) -> None:
    """A hit replays as SSE (one chunk per choice, the usage chunk with its charged cost if asked, [DONE])."""
    key, _ = gw.key()
    gw.chat(key, temperature=0)
    _stored(gw)
    response = gw.chat(key, temperature=0, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200 and response.headers["x-llmops-cache"] == "hit" and _calls(gw) == 1
    frames = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [orjson.loads(f) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["content"] == "pong"
    assert chunks[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["cost_usd"] == 0.0


def test_a_hit_may_be_charged_a_fraction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cache.hit_cost_fraction` charges that share of the stored answer's price; still no tokens."""
    monkeypatch.setenv("GATEWAY_INFERENCE_TOKEN", "t")
    with harness(tmp_path, route={"cache": {"enabled": True, "hit_cost_fraction": 0.5}}) as h:
        key, key_id = h.key()
        h.chat(key, temperature=0)
        _stored(h)
        spent = h.settled_spend(key_id)
        hit = h.chat(key, temperature=0)
        assert float(hit.headers["x-llmops-cost-usd"]) == pytest.approx(spent / 2)
        assert h.settled_spend(key_id, expected=spent * 1.5) == pytest.approx(spent * 1.5)
        event = h.event(hit.headers["x-request-id"])
        assert event["cached"] is True and event["prompt_tokens"] == 0 and event["cost_usd"] == pytest.approx(spent / 2)


async def test_a_team_is_bounded_in_bytes_and_its_oldest_entries_go_first(redis: Redis, prefix: str) -> None:
    """Per team: storing past GATEWAY_CACHE_TEAM_BYTES_MAX evicts the team's entries closest to expiry; the byte
    count stays at what is live; another team is untouched; an entry larger than the bound is refused."""
    cache = ResponseCache(redis, prefix, GatewayMetrics(CollectorRegistry()), team_max_bytes=2500, checked=False)
    policy = CacheFields(enabled=True, ttl_s=60)
    body = orjson.dumps({"choices": [{"message": {"content": "x" * 900}}]})
    keys = [cache.key("a", "chat", {"n": i}, "v") for i in range(3)]
    other = cache.key("b", "chat", {"n": 0}, "v")
    assert other != keys[0]  # the same request of another team is another entry
    assert await cache.put(other, "b", MODEL, body, None, None, policy)
    for key in keys:
        assert await cache.put(key, "a", MODEL, body, None, None, policy)
        await asyncio.sleep(0.005)  # distinct expiries: eviction order is by expiry
    assert await cache.get(keys[0], MODEL) is None  # evicted: the oldest
    assert await cache.get(keys[2], MODEL) is not None and await cache.get(other, MODEL) is not None
    assert 0 < await cache.team_bytes("a") <= 2500
    assert await cache.put(keys[2], "a", MODEL, body, None, None, policy)  # replacing does not double-count
    assert await cache.team_bytes("a") <= 2500
    huge = orjson.dumps({"choices": [{"message": {"content": "x" * 3000}}]})
    assert not await cache.put(keys[0], "a", MODEL, huge, None, None, CacheFields(max_entry_bytes=10_000))
    assert await redis.pttl(keys[2]) > 0 and await redis.pttl(f"{prefix}:{{t:a}}:cache:bytes") > 0


def test_the_routes_file_cache_section_is_strict() -> None:
    """A typo in the cache section stops the gateway at start, naming the closest valid key."""
    doc = {"models": [{"name": "m", "deployments": [{"url": "http://x/v1"}], "cache": {"enable": True}}]}
    with pytest.raises(
        RouteConfigError, match=r"models\[0\]\.cache: unknown key 'enable' \(did you mean 'enabled'\?\)"
    ):
        RouteTable.from_dict(doc)
    doc["models"][0]["cache"] = {"enabled": True, "hit_cost_fraction": 2}
    with pytest.raises(RouteConfigError, match="hit_cost_fraction"):
        RouteTable.from_dict(doc)


class _BrokenRedis:
    """A Redis whose every command fails (the cache must degrade to a miss, never fail the request)."""

    def register_script(self, _: str) -> Any:
        async def run(**_: Any) -> Any:
            raise RedisConnectionError("down")

        return run

    async def get(self, _: str) -> Any:
        raise RedisConnectionError("down")


async def test_a_redis_failure_is_a_miss_and_a_skipped_store() -> None:
    """The cache never fails a request: a read error is a miss (counted as error), a write error a skipped store."""
    metrics = GatewayMetrics(CollectorRegistry())
    cache = ResponseCache(_BrokenRedis(), "p", metrics, team_max_bytes=10_000, checked=False)  # type: ignore[arg-type]
    key = cache.key("a", "chat", {"model": MODEL}, "v")
    assert await cache.get(key, MODEL) is None
    assert not await cache.put(key, "a", MODEL, b"{}", None, None, CacheFields(enabled=True))
    registry = metrics.registry
    assert (
        registry.get_sample_value(
            "llmops_gateway_cache_lookups_total", {"model": MODEL, "layer": "exact", "outcome": "error"}
        )
        == 1
    )
    assert registry.get_sample_value("llmops_gateway_cache_stores_total", {"model": MODEL, "outcome": "error"}) == 1


def test_the_key_ignores_fields_that_do_not_change_the_answer_and_splits_teams_versions_checking() -> None:
    """`stream`, `user`, `metadata`, `temperature: 0` vs `0.0` share an entry; team, version, kind, output checking
    and any field that changes the answer do not."""
    plain = ResponseCache(_BrokenRedis(), "p", GatewayMetrics(CollectorRegistry()), 1024, checked=False)  # type: ignore[arg-type]
    checked = ResponseCache(_BrokenRedis(), "p", GatewayMetrics(CollectorRegistry()), 1024, checked=True)  # type: ignore[arg-type]
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0}
    key = plain.key("a", "chat", base, "v1")
    same = {**base, "temperature": 0.0, "stream": True, "user": "u", "metadata": {"a": "b"}, "store": False}
    assert plain.key("a", "chat", same, "v1") == key
    assert plain.key("a", "chat", {k: v for k, v in base.items() if k != "temperature"}, "v1") == key
    for other in (
        plain.key("b", "chat", base, "v1"),
        plain.key("a", "chat", base, "v2"),
        plain.key("a", "completion", base, "v1"),
        checked.key("a", "chat", base, "v1"),
        plain.key("a", "chat", {**base, "max_tokens": 9}, "v1"),
        plain.key("a", "chat", {**base, "seed": 1}, "v1"),
    ):
        assert other != key
    assert key.startswith("p:{t:a}:cache:e:")


def test_a_streamed_miss_is_relayed_and_not_stored(gw: Harness) -> None:
    """A streamed answer is not assembled into an entry: the next identical request misses again."""
    key, _ = gw.key()
    first = gw.chat(key, temperature=0, stream=True)
    assert first.status_code == 200 and first.headers["x-llmops-cache"] == "miss" and "pong" in first.text
    assert gw.chat(key, temperature=0, stream=True).headers["x-llmops-cache"] == "miss" and _calls(gw) == 2
    assert gw.metric("llmops_gateway_cache_stores_total", model=MODEL, outcome="stored") == 0


def test_redacted_inputs_are_keyed_on_what_is_forwarded(gw: Harness) -> None:
    """The key is the body after the input check's redactions: two prompts that differ only in an e-mail address
    the policy redacts are one entry (the upstream saw the same text); the raw address is never a key's input."""
    key, _ = gw.key()
    first = gw.chat(key, temperature=0, messages=[{"role": "user", "content": "mail jane.doe@example.com"}])
    assert first.headers["x-llmops-cache"] == "miss"
    assert gw.engine.requests[0]["body"]["messages"][0]["content"] == "mail <EMAIL_1>"
    _stored(gw)
    second = gw.chat(key, temperature=0, messages=[{"role": "user", "content": "mail john.roe@example.org"}])
    assert second.headers["x-llmops-cache"] == "hit" and _calls(gw) == 1
    assert second.headers["x-llmops-guardrails"].startswith("input=redact")
