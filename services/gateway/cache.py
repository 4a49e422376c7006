"""The exact-match response cache: a deterministic request's answer, reused for the same team and model version.

What is cached, and why it is safe:
- opt-in only: a route's `cache.enabled` in the routes file, or a key's `cache` field (true: on for that key's
  requests; false: never, whatever the route says; unset: the route decides). Nothing is cached otherwise.
- deterministic requests only: `temperature: 0`, or no temperature on a route whose engines decode greedily by
  default (`cache.greedy_default: true`). Sampling answers are never reused.
- the key is the body as it is forwarded (after the guardrails' redactions, with the output bound written in),
  minus the fields that do not change the answer (`stream`, `stream_options`, `user`, `metadata`, `store`), plus
  the team, the served model version (the registry's production version, else a fingerprint of the route's
  deployments) and whether this gateway checks outputs. So teams never share entries, a promotion or a new
  deployment invalidates every entry, and an answer stored unchecked is never served by a gateway that checks.
- only whole 200 answers are stored, after the output check: blocked answers, answers whose output check could not
  run (fail-open), and answers over `cache.max_entry_bytes` are not. The output verdict is stored with the entry and
  applies to every hit; the input check runs on every request, hit or not, before the cache is read.
- entries live in Redis under the team's hash tag with the route's TTL; a team's entries are bounded in bytes
  (GATEWAY_CACHE_TEAM_BYTES_MAX): storing past it evicts the team's entries closest to expiry.

A semantic layer (semantic_cache.py, a route's `cache.semantic`) answers, after an exact miss, close rewordings of
the last user message with an entry stored here; it keeps every rule above.

The cache never fails a request: a Redis error while reading is a miss, while storing is a skipped store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops_common.sse import DONE, sse_frame
from services.gateway.keys import KeyRecord
from services.gateway.metrics import GatewayMetrics
from services.gateway.routes_config import CacheFields
from services.gateway.routing import ModelRoute
from services.gateway.semantic_cache import Probe, SemanticIndex

log = logging.getLogger("gateway.cache")
_STORE = (Path(__file__).parent / "lua" / "cache_store.lua").read_text()
# Request fields that do not change what the model answers: left out of the key so they do not split entries.
_NOT_IN_KEY = frozenset({"stream", "stream_options", "user", "metadata", "store"})
_MAX_EVICTIONS = 64  # bounds one store script's work


def cache_policy(record: KeyRecord, route: ModelRoute) -> CacheFields | None:
    """The route's cache settings when this key's requests to this model may be cached, else None."""
    if record.cache is False:
        return None
    if record.cache is True or route.cache.enabled:
        return route.cache
    return None


def deterministic(payload: dict[str, Any], policy: CacheFields) -> bool:
    """Greedy decoding: temperature 0, or none sent to engines whose default is greedy (the route says so)."""
    temperature = payload.get("temperature")
    if temperature is None:
        return policy.greedy_default
    return bool(temperature == 0)


def route_fingerprint(route: ModelRoute) -> str:
    """The version of a model the registry does not version: where and as what it is served."""
    served = sorted((d.name, d.url, d.model) for d in route.deployments)
    return "routes:" + hashlib.sha256(orjson.dumps(served)).hexdigest()[:16]


@dataclass
class CachedAnswer:
    """An entry as read back: the answer relayed then, and the output verdict it got."""

    body: bytes
    data: dict[str, Any]
    output: dict[str, Any] | None  # {"decision", "findings"}; None: no output check (none configured)
    deployment: str | None
    stored_at: float
    similarity: float | None = None  # a semantic hit: how close the question was to the stored one

    @property
    def match_header(self) -> str:
        """x-llmops-cache-match: `exact`, or `semantic; similarity=0.9731`."""
        return "exact" if self.similarity is None else f"semantic; similarity={self.similarity:.4f}"

    @property
    def usage(self) -> dict[str, Any]:
        """The usage the answer cost when it was made."""
        usage = self.data.get("usage")
        return usage if isinstance(usage, dict) else {}

    def texts(self) -> list[str]:
        """The answer's texts (every choice), for the trace event."""
        out = []
        for choice in self.data.get("choices") or ():
            text = (choice.get("message") or {}).get("content") or choice.get("text")
            if isinstance(text, str) and text:
                out.append(text)
        return out


@dataclass
class ResponseCache:
    """Reads and writes entries; `checked`: this gateway runs output checks (part of every key)."""

    redis: Redis
    prefix: str
    metrics: GatewayMetrics
    team_max_bytes: int
    checked: bool
    semantic_quantized: bool = True  # the semantic layer's encoder is the int8 one
    semantic_remembered: int = 4096  # vectors the semantic layer keeps by wording (0: none)
    _store: Any = field(init=False, repr=False)
    semantic: SemanticIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._store = self.redis.register_script(_STORE)
        # Its encoder loads on a semantic route's first use.
        self.semantic = SemanticIndex(self.redis, self.metrics, self.semantic_quantized, self.semantic_remembered)

    def _team(self, team: str) -> str:
        return f"{self.prefix}:{{t:{team}}}:cache"

    def key(self, team: str, kind: str, payload: dict[str, Any], version: str) -> str:
        """The Redis key of a request's entry (payload: the body as it will be forwarded)."""
        digest = hashlib.sha256(
            orjson.dumps([team, kind, version, self.checked, _material(payload)], option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        return f"{self._team(team)}:e:{digest}"

    def semantic_probe(
        self, team: str, kind: str, payload: dict[str, Any], version: str, policy: CacheFields
    ) -> Probe | None:
        """Start the semantic lookup of a request that missed the exact layer (its embedding runs from now on);
        None unless the route enables the layer and the request is a chat whose last message is the user's text."""
        if kind != "chat" or not policy.semantic.enabled:
            return None
        material = {"team": team, "kind": kind, "version": version, "checked": self.checked, "body": _material(payload)}
        head = [team, kind, payload.get("model"), version, self.checked]
        return self.semantic.probe(self._team(team), material, head, policy.semantic)

    async def semantic_get(self, probe: Probe, model: str) -> CachedAnswer | None:
        """The entry of the closest indexed question of the probe's context, if close enough and still stored."""
        match = await self.semantic.lookup(probe, model)
        if match is None:
            return None
        fetched = await self.fetch(match.entry_key)
        if fetched is None:  # the entry expired or was evicted: its vector goes too
            await self.semantic.forget(probe, match.entry_key)
            self.metrics.cache_lookups.labels(model, "semantic", "miss").inc()
            return None
        answer = self.answer(fetched, model, layer="semantic")
        if answer is not None:
            answer.similarity = match.similarity
        return answer

    async def fetch(self, key: str) -> str | RedisError | None:
        """The raw entry (None: absent; the RedisError when Redis failed). No metrics: a fetch may be discarded."""
        try:
            raw = await self.redis.get(key)
        except RedisError as exc:
            return exc
        return None if raw is None else str(raw)

    def answer(self, fetched: str | RedisError | None, model: str, layer: str = "exact") -> CachedAnswer | None:
        """A fetched entry as an answer, or None (a miss; also when Redis failed or the entry is unreadable)."""
        if isinstance(fetched, RedisError):
            log.warning("cache read failed; served as a miss", extra={"error": str(fetched)})
            self.metrics.cache_lookups.labels(model, layer, "error").inc()
            return None
        if fetched is None:
            self.metrics.cache_lookups.labels(model, layer, "miss").inc()
            return None
        try:
            head, _, body = fetched.partition("\n")
            meta = orjson.loads(head)
            answer = CachedAnswer(
                body.encode(), orjson.loads(body), meta.get("output"), meta.get("deployment"), meta["at"]
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.metrics.cache_lookups.labels(model, layer, "error").inc()
            return None
        self.metrics.cache_lookups.labels(model, layer, "hit").inc()
        self.metrics.cache_bytes.labels(model, "served").inc(len(answer.body))
        return answer

    async def get(self, key: str, model: str) -> CachedAnswer | None:
        """Fetch and read an entry."""
        return self.answer(await self.fetch(key), model)

    async def put(
        self,
        key: str,
        team: str,
        model: str,
        body: bytes,
        output: dict[str, Any] | None,
        deployment: str | None,
        policy: CacheFields,
    ) -> bool:
        """Store an answer (bounded per entry and per team); False when it was not stored."""
        if len(body) > policy.max_entry_bytes:
            self.metrics.cache_stores.labels(model, "too_large").inc()
            return False
        meta = orjson.dumps({"output": output, "deployment": deployment, "at": time.time()})
        value = meta.decode() + "\n" + body.decode()
        base = self._team(team)
        now_ms = int(time.time() * 1000)
        try:
            evicted = await self._store(
                keys=[key, f"{base}:idx", f"{base}:sizes", f"{base}:bytes"],
                args=[value, policy.ttl_s * 1000, now_ms, self.team_max_bytes, _MAX_EVICTIONS],
            )
        except RedisError as exc:
            log.warning("cache write failed; answer not stored", extra={"error": str(exc)})
            self.metrics.cache_stores.labels(model, "error").inc()
            return False
        if int(evicted) < 0:
            self.metrics.cache_stores.labels(model, "team_full").inc()
            return False
        self.metrics.cache_evictions.inc(int(evicted))
        self.metrics.cache_stores.labels(model, "stored").inc()
        self.metrics.cache_bytes.labels(model, "stored").inc(len(value))
        return True

    async def put_and_index(
        self,
        key: str,
        team: str,
        model: str,
        body: bytes,
        output: dict[str, Any] | None,
        deployment: str | None,
        policy: CacheFields,
        probe: Probe | None,
    ) -> None:
        """Store an answer, then index its question for the semantic layer (only once the entry exists)."""
        if await self.put(key, team, model, body, output, deployment, policy) and probe is not None:
            await self.semantic.add(probe, key, model, policy.ttl_s, policy.semantic)

    async def team_bytes(self, team: str) -> int:
        """Bytes of the team's live entries as the store script counts them."""
        return int(await self.redis.get(f"{self._team(team)}:bytes") or 0)


def _material(payload: dict[str, Any]) -> dict[str, Any]:
    """The body's fields that change the answer (what both layers key on)."""
    material = {k: v for k, v in payload.items() if k not in _NOT_IN_KEY}
    if material.get("temperature") == 0:  # 0 and 0.0 (and none, where greedy by default) are one entry
        del material["temperature"]
    return material


@dataclass
class Prefetch:
    """A cache read started before admission (stages/admit.py, stages/lookup.py), for the key the request had then."""

    key: str
    task: asyncio.Task[str | RedisError | None]


def discard(prefetch: Prefetch | None) -> None:
    """Drop a read whose answer is not needed (the request was refused, or its key changed)."""
    if prefetch is not None and not prefetch.task.done():
        prefetch.task.cancel()


def _tool_call_deltas(calls: Any) -> Any:
    """Whole tool calls as stream deltas (each needs its index)."""
    if not isinstance(calls, list):
        return calls
    return [{"index": i, **c} if isinstance(c, dict) else c for i, c in enumerate(calls)]


async def replay_stream(data: dict[str, Any], kind: str, usage: dict[str, Any] | None) -> AsyncIterator[bytes]:
    """A cached whole answer as an OpenAI stream: one chunk per choice, the usage chunk if asked, [DONE]."""
    chat = kind == "chat"
    base = {
        "id": data.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": data.get("created"),
        "model": data.get("model"),
    }
    for i, choice in enumerate(data.get("choices") or ()):
        index = choice.get("index", i)
        if chat:
            message = choice.get("message") or {}
            delta = {k: v for k, v in message.items() if v is not None}
            if "tool_calls" in delta:
                delta["tool_calls"] = _tool_call_deltas(delta["tool_calls"])
            part: dict[str, Any] = {"index": index, "delta": delta}
        else:
            part = {"index": index, "text": choice.get("text") or ""}
        if choice.get("logprobs") is not None:
            part["logprobs"] = choice["logprobs"]
        part["finish_reason"] = choice.get("finish_reason")
        yield sse_frame(base | {"choices": [part]})
    if usage is not None:
        yield sse_frame(base | {"choices": [], "usage": usage})
    yield DONE
