"""Trace events: one per request, written to a Redis stream (`llmops:events`) by a background task.

The gateway writes one per LLM call, RAG one per answer request; the feedback service reads them all. The event
is a `llmops_common.trace_schema.TraceEvent`; it is serialised by the writer task, off the request's path.
`emit` only appends to an in-memory buffer, so a slow or absent Redis never blocks or fails a request.
The writer XADDs in batches (one pipeline per burst) and retries with backoff while Redis is down; if it
stays down until the buffer is full, further events are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from prometheus_client import Counter
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops_common.trace_schema import TraceEvent

log = logging.getLogger("llmops.trace_events")


class EventEmitter:
    """Buffers events and XADDs them in batches. `emitted`/`dropped` are the service's Prometheus counters."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        maxlen: int = 100_000,  # about 200 MB at the ~2 KB an event measured by the soak
        *,
        emitted: Counter | None = None,
        dropped: Counter | None = None,
        buffer_size: int = 50_000,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.maxlen = maxlen
        self._emitted = emitted
        self._dropped = dropped
        self._queue: asyncio.Queue[TraceEvent] = asyncio.Queue(maxsize=buffer_size)
        self._task: asyncio.Task[None] | None = None

    def emit(self, event: TraceEvent) -> None:
        """Queue an event; never raises, never waits."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            if self._dropped is not None:
                self._dropped.inc()

    def emit_from(self, build: Callable[[], TraceEvent]) -> None:
        """Build the event and queue it. A producer's event that does not validate is a bug, but the request it
        describes has been served: it is logged and counted as dropped, never raised into the request."""
        try:
            event = build()
        except ValidationError:
            log.exception("trace event does not match the schema; dropped")
            if self._dropped is not None:
                self._dropped.inc()
            return
        self.emit(event)

    async def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="trace-event-writer")

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Flush what is buffered (bounded), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), flush_timeout_s)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            batch = [await self._queue.get()]
            while len(batch) < 500 and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for event in batch:
                            pipe.xadd(
                                self.stream, {"event": orjson.dumps(event.wire())}, maxlen=self.maxlen, approximate=True
                            )
                        await pipe.execute()
                    if self._emitted is not None:
                        self._emitted.inc(len(batch))
                    backoff = 0.1
                    break
                except RedisError as exc:
                    log.warning("trace events not written yet; retrying", extra={"error": str(exc)})
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            for _ in batch:
                self._queue.task_done()
