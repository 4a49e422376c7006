"""Consume trace events from the Redis stream with a consumer group; acknowledge only after commit.

Delivery is at-least-once (an entry stays pending until XACK, and XACK follows the commit); storage is
idempotent by (team, request id), so each event lands in the store exactly once. Entries left pending by a
crashed consumer are taken over with XAUTOCLAIM once idle for `claim_idle_ms`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.feedback.events import InvalidEvent, TraceEvent, parse_entry
from services.feedback.metrics import FeedbackMetrics
from services.feedback.privacy import dead_letter_text, withhold_raw_text
from services.feedback.rules import LabelRules
from services.feedback.store.ingest import IngestResult, ingest_batch
from services.feedback.store.store import Store

log = logging.getLogger("llmops.feedback.consumer")

Entry = tuple[bytes, dict[bytes, bytes] | None]
OnStored = Callable[[list[TraceEvent]], Awaitable[None]]


class StreamConsumer:
    """One consumer of the group; run() loops until stop() is called."""

    def __init__(
        self,
        redis: Redis,
        store: Store,
        metrics: FeedbackMetrics,
        rules: LabelRules,
        *,
        stream_key: str,
        group: str,
        name: str,
        batch_size: int = 500,
        block_ms: int = 200,
        claim_idle_ms: int = 30_000,
        forget_idle_ms: int = 3_600_000,
        on_stored: OnStored | None = None,
    ) -> None:
        self.redis, self.store, self.metrics, self.rules = redis, store, metrics, rules
        self.stream_key, self.group, self.name = stream_key, group, name
        self.batch_size, self.block_ms, self.claim_idle_ms = batch_size, block_ms, claim_idle_ms
        self.forget_idle_ms = forget_idle_ms
        self.on_stored = on_stored
        self._stopping = asyncio.Event()
        self.running = False

    async def ensure_group(self) -> None:
        """Create the group at the start of the stream (so events sent before the first start count)."""
        try:
            await self.redis.xgroup_create(self.stream_key, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Recover own pending entries, then read new ones; claim dead consumers' entries now and then."""
        self.running = True
        try:
            await self._retrying(self.ensure_group)
            await self._drain_own_pending()
            next_claim, next_stats = 0.0, 0.0
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_claim:
                    await self._claim_idle()
                    await self._forget_dead_consumers()
                    next_claim = now + max(self.claim_idle_ms / 2000, 0.1)
                if now >= next_stats:
                    await self._update_backlog()
                    next_stats = now + 2.0
                entries = await self._retrying(self._read_new)
                if entries:
                    await self._handle(entries)
        finally:
            self.running = False

    async def _retrying(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Call fn until Redis answers (or we are stopping); a Redis outage must not kill the consumer."""
        delay = 0.1
        while True:
            try:
                return await fn()
            except (RedisError, OSError) as exc:
                self.metrics.redis_errors.inc()
                if self._stopping.is_set():
                    return None
                log.warning("redis call failed; retrying", extra={"error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _read_new(self) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            self.group, self.name, {self.stream_key: ">"}, count=self.batch_size, block=self.block_ms
        )
        return reply[0][1] if reply else []

    async def _drain_own_pending(self) -> None:
        """Entries this consumer name read before a crash but never acknowledged."""
        start = "0"
        while not self._stopping.is_set():
            reply = await self._retrying(
                functools.partial(
                    self.redis.xreadgroup, self.group, self.name, {self.stream_key: start}, count=self.batch_size
                )
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self._handle(entries)
            start = entries[-1][0]

    async def _claim_idle(self) -> None:
        """XAUTOCLAIM entries whose consumer went silent, and process them here."""
        cursor = "0-0"
        while not self._stopping.is_set():
            reply = await self._retrying(
                functools.partial(
                    self.redis.xautoclaim,
                    self.stream_key,
                    self.group,
                    self.name,
                    self.claim_idle_ms,
                    start_id=cursor,
                    count=self.batch_size,
                )
            )
            if not reply:
                return
            cursor, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:  # trimmed from the stream before anyone stored them: nothing left to store
                await self._retrying(functools.partial(self.redis.xack, self.stream_key, self.group, *deleted))
                self.metrics.events.labels("trimmed").inc(len(deleted))
            if entries:
                self.metrics.claimed.inc(len(entries))
                log.info("claimed idle entries", extra={"count": len(entries)})
                await self._handle(entries)
            if cursor in (b"0-0", "0-0"):
                return

    async def _forget_dead_consumers(self) -> None:
        """Delete consumers idle for `forget_idle_ms` with nothing pending (restarted replicas)."""
        try:
            for consumer in await self.redis.xinfo_consumers(self.stream_key, self.group):
                name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
                if name != self.name and consumer["pending"] == 0 and consumer["idle"] > self.forget_idle_ms:
                    await self.redis.xgroup_delconsumer(self.stream_key, self.group, name)
        except (RedisError, OSError):
            self.metrics.redis_errors.inc()

    async def _update_backlog(self) -> None:
        try:
            for group in await self.redis.xinfo_groups(self.stream_key):
                if group["name"] in (self.group, self.group.encode()):
                    self.metrics.pending.set(group.get("pending") or 0)
                    self.metrics.stream_backlog.set(group.get("lag") or 0)
        except (RedisError, OSError):
            self.metrics.redis_errors.inc()

    async def _handle(self, entries: Sequence[Entry]) -> None:
        """Parse, commit (retrying until it works), then acknowledge the whole batch."""
        events: list[tuple[str, TraceEvent]] = []
        invalid: list[tuple[str, str, str | None]] = []
        trimmed = 0
        for entry_id, fields in entries:
            sid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if fields is None:  # pending entry whose data was trimmed away
                trimmed += 1
                continue
            try:
                # Only the withheld form of a blocked or redacted request goes any further (store, sink).
                events.append((sid, withhold_raw_text(parse_entry(fields))))
            except InvalidEvent as exc:
                invalid.append((sid, str(exc), dead_letter_text(fields.get(b"event") or b"")))
                log.warning("dead-lettered an invalid event", extra={"stream_id": sid, "reason": str(exc)})
        result = await self._commit(events, invalid)
        if result is None:
            return  # stopping before the commit worked: entries stay pending for the next start
        await self._retrying(lambda: self.redis.xack(self.stream_key, self.group, *[e[0] for e in entries]))
        self._observe(result, trimmed)
        if self.on_stored and result.stored:
            await self.on_stored(result.stored)

    async def _commit(
        self, events: list[tuple[str, TraceEvent]], invalid: list[tuple[str, str, str | None]]
    ) -> IngestResult | None:
        delay = 0.2
        while True:
            try:
                return await self.store.write(ingest_batch, events, invalid, self.rules.reasons, time.time())
            except Exception as exc:  # any store failure: count, keep the entries pending, retry
                self.metrics.store_errors.inc()
                log.error("store commit failed; retrying", extra={"error": repr(exc), "events": len(events)})
                if self._stopping.is_set():
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _observe(self, result: IngestResult, trimmed: int) -> None:
        now = time.time()
        self.metrics.events.labels("stored").inc(len(result.stored))
        self.metrics.events.labels("duplicate").inc(result.duplicates)
        self.metrics.events.labels("invalid").inc(result.invalid)
        if trimmed:
            self.metrics.events.labels("trimmed").inc(trimmed)
        self.metrics.batch_size.observe(len(result.stored))
        for ev in result.stored:
            self.metrics.lag.observe(max(now - ev.ts, 0.0))
        if result.stored:
            self.metrics.last_lag.set(max(now - result.stored[-1].ts, 0.0))
