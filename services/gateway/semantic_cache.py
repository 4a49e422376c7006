"""The semantic layer of the response cache: a close rewording of a question already answered gets that answer.

It sits behind the exact cache (cache.py) and keeps all of its rules: opt-in (a route's `cache.semantic.enabled`,
on top of the exact cache's opt-in), deterministic requests only, per team, per served model version, per checked
flag, and the input check runs before it. What it adds, and what makes it safe:
- chat requests only, and only the last message's text varies: it must be the user's (text parts only), and
  everything else (system prompt, earlier turns, every parameter, the model version, the team) is hashed into the
  context the question is indexed under. A question is only ever compared with questions asked in the very same
  context, so a hit never crosses teams, versions, prompts or parameters.
- the text is embedded with all-MiniLM-L6-v2 (llmops_common.minilm_onnx, ONNX Runtime), by default its int8 copy
  (GATEWAY_CACHE_SEMANTIC_INT8: 2 to 2.5x less CPU per question than the float graph; the default threshold is
  calibrated for it, bench/semantic_cache_threshold.py), loaded on first use only (a gateway whose routes never
  enable the layer never imports it), run on one worker thread off the event loop. The encoder's name is part of
  the context a question is indexed under, so vectors of two encoders are never compared. A text longer than the
  encoder's window (256 word pieces) is not embedded: the encoder would see only its head, and two questions that
  differ after it would look identical.
- the vectors of the last questions embedded are remembered per process (GATEWAY_CACHE_SEMANTIC_EMBEDDINGS, keyed by
  the word pieces the encoder reads, so "How do I X?" and "how do i x ?" share one): a wording asked again costs a
  tokenisation (tens of microseconds, on the loop for a short text) instead of an encoder run (milliseconds).
- a hit needs cosine similarity >= the route's `cache.semantic.threshold` (unset: the encoder's calibrated default,
  routes_config.SEMANTIC_THRESHOLDS) AND passes two lexical guards: the same
  numbers in both texts ("12 times 12" vs "12 times 13" embed almost alike; their answers differ), and not the
  same words in another order ("a string to an integer" vs "an integer to a string": 0.997 with this encoder).
- vectors live in Redis beside the entries, under the team's hash tag (so replicas share them): one hash per
  context (entry key -> fingerprint and float16 vector, base64), one sorted set per team and model version that bounds
  the count (`cache.semantic.max_entries`, oldest expiry first) and expires them with their entries' TTL. A vector
  always points at an exact entry; when that entry is gone (expired, evicted for the team's byte bound) the vector
  serves nothing and is deleted when a lookup meets it.

Like the exact layer it never fails a request: a Redis error, an encoder that cannot load, or a text it cannot
embed is a miss.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.gateway.metrics import GatewayMetrics
from services.gateway.routes_config import SEMANTIC_THRESHOLDS, SemanticCacheFields

log = logging.getLogger("gateway.semantic_cache")
_INDEX = (Path(__file__).parent / "lua" / "semantic_index.lua").read_text()
_MAX_PURGE = 64  # bounds one index script's work
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"\w+")
# Texts up to this long are tokenised on the event loop (a remembered vector then needs no thread hop): tens of us.
_LOOP_TOKENISE_CHARS = 1024


class Encoder(Protocol):
    """What the layer needs from an embedding model (MiniLMEncoder; tests may pass a fake)."""

    max_seq_length: int

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def tokens(self, text: str) -> tuple[int, ...]:
        """The word pieces the encoder reads for `text` (special tokens excluded): the window check and the key of
        a remembered vector (same pieces, same vector)."""
        ...


def encoder_name(quantized: bool) -> str:
    """What the index records vectors under: a vector is only compared with vectors of the same encoder."""
    return "all-MiniLM-L6-v2" + ("+int8" if quantized else "")


class _MiniLM:
    """all-MiniLM-L6-v2 on ONNX Runtime, with the word pieces the window check and the remembered vectors need."""

    def __init__(self, quantized: bool) -> None:
        from llmops_common.minilm_onnx import MiniLMEncoder  # late: only gateways that enable the layer load it

        self._encoder = MiniLMEncoder(threads=1, batch_size=1, quantized=quantized)
        self.max_seq_length = self._encoder.max_seq_length

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode(texts)

    def tokens(self, text: str) -> tuple[int, ...]:
        return tuple(self._encoder.tokenizer.encode(text, add_special_tokens=False).ids)


@functools.cache
def shared_encoder(quantized: bool = True) -> Encoder:
    """One encoder per process and kind, whatever number of caches use it (a session is safe across threads)."""
    return _MiniLM(quantized)


def question(payload: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """(the last user message's text, the messages with that text blanked), or None when the request is not one the
    semantic layer serves (not a user message last, a non-text part, no messages)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list) and content and all(_is_text(p) for p in content):
        text = "\n".join(str(p.get("text", "")) for p in content)
    else:
        return None
    if not text.strip():
        return None
    blanked = [*messages[:-1], {k: (None if k == "content" else v) for k, v in last.items()}]
    return text, blanked


def _b64_width(dimension: int) -> int:
    """Length of a float16 vector of `dimension` in base64 (384 -> 1024: 768 bytes, no padding)."""
    return 4 * -(-dimension * 2 // 3)


def _is_text(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text"


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


def fingerprint(text: str) -> str:
    """What the lexical guards compare, as `numbers.bag.sequence` digests: the numbers the text carries (in order),
    its words as a multiset, and its words in order."""
    words = _WORD.findall(text.lower())
    return f"{_digest(_NUMBER.findall(text))}.{_digest(sorted(words))}.{_digest(words)}"


def compatible(asked: str, stored: str) -> bool:
    """Whether two questions (their fingerprints) may share an answer, whatever their cosine: not when their numbers
    differ ("12 times 12" vs "12 times 13"), nor when they are the same words in another order ("convert a string
    to an integer" vs "an integer to a string": mean-pooled embeddings are nearly blind to word order, 0.997)."""
    numbers, bag, sequence = asked.split(".")
    other_numbers, other_bag, other_sequence = [*stored.split("."), "", ""][:3]
    if numbers != other_numbers:
        return False
    return not (bag == other_bag and sequence != other_sequence)


@dataclass
class Probe:
    """One request's semantic lookup: where its question is indexed, and its vector (embedding started early)."""

    space: str  # the team's index for this model version (sorted set: the count bound)
    context: str  # this context's vectors (hash: entry key -> "fingerprint:vector")
    fingerprint: str  # the lexical guards' view of the question (fingerprint())
    vector: asyncio.Task[np.ndarray | None]
    threshold: float
    similarity: float | None = None


@dataclass
class SemanticMatch:
    """A hit: the entry it points at and how close the question was."""

    entry_key: str
    similarity: float


@dataclass
class SemanticIndex:
    """Embeds questions, finds the closest indexed one of the same context, and indexes answered ones."""

    redis: Redis
    metrics: GatewayMetrics
    quantized: bool = True  # the int8 encoder (GATEWAY_CACHE_SEMANTIC_INT8)
    remembered: int = 4096  # vectors kept per process, by word pieces (GATEWAY_CACHE_SEMANTIC_EMBEDDINGS; 0: none)
    encoder_factory: Callable[[], Encoder] | None = None  # None: the shared all-MiniLM-L6-v2 of `quantized`
    _encoder: Encoder | None = field(default=None, init=False, repr=False)
    _vectors: OrderedDict[tuple[int, ...], np.ndarray] = field(default_factory=OrderedDict, init=False, repr=False)
    _loading: asyncio.Future[Encoder | None] | None = field(default=None, init=False, repr=False)
    _pool: ThreadPoolExecutor = field(init=False, repr=False)
    _pending: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)
    _index: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # One thread: encodes queue behind each other instead of taking every core from the event loop's own work.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semantic-cache")
        self._index = self.redis.register_script(_INDEX)

    async def encoder(self) -> Encoder | None:
        """The encoder, loaded once on first use (off the loop); None when it cannot load (the layer then misses)."""
        if self._encoder is not None:
            return self._encoder
        if self._loading is None:
            self._loading = asyncio.get_running_loop().run_in_executor(self._pool, self._load)
        self._encoder = await asyncio.shield(self._loading)
        return self._encoder

    def _load(self) -> Encoder | None:
        started = time.perf_counter()
        try:
            factory = self.encoder_factory or functools.partial(shared_encoder, self.quantized)
            encoder: Encoder = factory()
        except Exception as exc:  # a missing package or model file: the gateway keeps serving, without this layer
            log.error("semantic cache encoder failed to load; semantic lookups miss", extra={"error": str(exc)})
            return None
        log.info("semantic cache encoder loaded", extra={"seconds": round(time.perf_counter() - started, 3)})
        return encoder

    @staticmethod
    def _embed(
        encoder: Encoder, text: str, pieces: tuple[int, ...] | None
    ) -> tuple[tuple[int, ...], np.ndarray | None]:
        """(the text's word pieces, its vector; None when it is longer than the encoder's window)."""
        if pieces is None:
            pieces = encoder.tokens(text)
        if len(pieces) > encoder.max_seq_length - 2:  # [CLS] and [SEP] take two places
            return pieces, None
        return pieces, np.asarray(encoder.encode([text])[0], dtype=np.float32)

    async def _vector(self, text: str) -> np.ndarray | None:
        """The text's unit vector; None when the encoder is unavailable, the text too long, or encoding failed."""
        encoder = await self.encoder()
        if encoder is None:
            return None
        pieces: tuple[int, ...] | None = None
        try:
            if self.remembered and len(text) <= _LOOP_TOKENISE_CHARS:
                pieces = encoder.tokens(text)
                if (known := self._vectors.get(pieces)) is not None:
                    self._vectors.move_to_end(pieces)
                    return known
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            read, vector = await loop.run_in_executor(self._pool, self._embed, encoder, text, pieces)
        except Exception as exc:  # an encoder failure is a miss, never a failed request
            log.warning("semantic cache embedding failed; served as a miss", extra={"error": str(exc)})
            return None
        if vector is None:
            return None
        self.metrics.cache_embed_seconds.observe(time.perf_counter() - started)
        if self.remembered:
            self._vectors[read] = vector
            if len(self._vectors) > self.remembered:
                self._vectors.popitem(last=False)
        return vector

    def _task(self, work: Any) -> asyncio.Task[np.ndarray | None]:
        task: asyncio.Task[np.ndarray | None] = asyncio.ensure_future(work)
        self._pending.add(task)  # a strong reference until done (asyncio holds tasks weakly)
        task.add_done_callback(self._pending.discard)
        return task

    def probe(
        self, team_base: str, material: dict[str, Any], head: list[Any], policy: SemanticCacheFields
    ) -> Probe | None:
        """Start a request's lookup (its embedding runs from now on); None when the request is not one it serves.
        `team_base`: the team's cache key prefix; `material`: the exact key's inputs (team, kind, version, checked
        and the body as forwarded); `head`: the same, hashed for the index space (no body)."""
        body = material["body"]
        asked = question(body)
        if asked is None:
            return None
        text, blanked = asked
        context = dict(material, body=dict(body, messages=blanked), encoder=encoder_name(self.quantized))
        space = hashlib.sha256(orjson.dumps(head, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]
        ctx = hashlib.sha256(orjson.dumps(context, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return Probe(
            space=f"{team_base}:s:{space}",
            context=f"{team_base}:v:{ctx}",
            fingerprint=fingerprint(text),
            vector=self._task(self._vector(text)),
            threshold=SEMANTIC_THRESHOLDS["int8" if self.quantized else "float"]
            if policy.threshold is None
            else policy.threshold,
        )

    async def lookup(self, probe: Probe, model: str) -> SemanticMatch | None:
        """The closest indexed question of the probe's context, if close enough (and still backed by an entry)."""
        vector = await probe.vector
        if vector is None:
            self.metrics.cache_lookups.labels(model, "semantic", "miss").inc()
            return None
        try:
            indexed = await self.redis.hgetall(probe.context)
        except RedisError as exc:
            log.warning("semantic cache read failed; served as a miss", extra={"error": str(exc)})
            self.metrics.cache_lookups.labels(model, "semantic", "error").inc()
            return None
        width = _b64_width(vector.shape[0])
        keys, rows = [], []
        for key, value in indexed.items():
            stored, _, encoded = str(value).partition(":")
            if len(encoded) == width and compatible(probe.fingerprint, stored):  # another width: another encoder
                keys.append(str(key))
                rows.append(encoded)
        if not rows:
            self.metrics.cache_lookups.labels(model, "semantic", "miss").inc()
            return None
        try:
            if (2 * vector.shape[0]) % 3 == 0:  # rows without base64 padding concatenate: one decode for all (384)
                raw = base64.b64decode("".join(rows), validate=True)
            else:
                raw = b"".join(base64.b64decode(row, validate=True) for row in rows)
            matrix = np.frombuffer(raw, dtype=np.float16).reshape(len(rows), -1)
        except ValueError:  # not base64: not written by this layer
            self.metrics.cache_lookups.labels(model, "semantic", "error").inc()
            return None
        scores = matrix.astype(np.float32) @ vector
        best = int(np.argmax(scores))
        similarity = float(min(1.0, scores[best]))
        probe.similarity = similarity
        self.metrics.cache_similarity.labels(model).observe(similarity)
        if similarity < probe.threshold:
            self.metrics.cache_lookups.labels(model, "semantic", "miss").inc()
            return None
        return SemanticMatch(keys[best], similarity)  # counted by the caller, once the entry is read

    async def forget(self, probe: Probe, entry_key: str) -> None:
        """Drop a vector whose entry is gone (met by a lookup)."""
        with contextlib.suppress(RedisError):  # it expires with its context anyway
            await self.redis.hdel(probe.context, entry_key)

    async def add(self, probe: Probe, entry_key: str, model: str, ttl_s: int, policy: SemanticCacheFields) -> bool:
        """Index a stored answer's question under its context (bounded per team and model version)."""
        vector = await probe.vector
        if vector is None:
            return False
        value = probe.fingerprint + ":" + base64.b64encode(vector.astype(np.float16).tobytes()).decode()
        try:
            await self._index(
                keys=[probe.space, probe.context],
                args=[entry_key, value, ttl_s * 1000, int(time.time() * 1000), policy.max_entries, _MAX_PURGE],
            )
        except RedisError as exc:
            log.warning("semantic cache index write failed", extra={"error": str(exc)})
            self.metrics.cache_semantic_writes.labels(model, "error").inc()
            return False
        self.metrics.cache_semantic_writes.labels(model, "indexed").inc()
        return True

    def close(self) -> None:
        """Stop the encoder's thread (shutdown)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
