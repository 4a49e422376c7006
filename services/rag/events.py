"""RAG's own trace events: one per answer request, on the same Redis stream as the gateway's, so the feedback
service sees what was retrieved (chunk ids and scores) next to the LLM call the gateway metered.

Emission never blocks or fails a request: events go through the platform's buffered writer
(llmops_common.trace_events), which batches, retries while Redis is down, and drops (counted) when full.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis

from llmops_common.request_id import current_request_id
from llmops_common.telemetry import current_trace_id
from llmops_common.trace_events import EventEmitter
from llmops_common.trace_schema import RetrievedChunk, TraceEvent
from services.rag.gateway import Caller


class RagEvents:
    """Builds the trace event (llmops_common.trace_schema, endpoint `rag`) of each answer request and queues it."""

    def __init__(
        self,
        redis_url: str,
        stream: str,
        maxlen: int = 1_000_000,
        emitted: Counter | None = None,
        dropped: Counter | None = None,
    ) -> None:
        self.redis = Redis.from_url(redis_url)
        self.stream = stream
        self._writer = EventEmitter(self.redis, stream, maxlen, emitted=emitted, dropped=dropped)

    async def start(self) -> None:
        """Start the background writer."""
        await self._writer.start()

    def record(
        self, caller: Caller, question: str, out: dict[str, Any], status: int, started: float, stream: bool = False
    ) -> None:
        """Queue the event of one answer request (`out` is the answer body, or the error's envelope)."""
        usage = out.get("usage") or {}
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self._writer.emit_from(
            lambda: TraceEvent(
                request_id=current_request_id() or f"rag-{time.time_ns()}",
                trace_id=current_trace_id(),
                ts=time.time(),
                team=caller.team,
                project=caller.project,
                key_id=caller.key_id,
                model=out.get("model") or "unknown",
                model_version=out.get("model_version"),
                prompt_version=out.get("prompt_version"),
                endpoint="rag",
                status=status,
                error_code=(out.get("error") or {}).get("code"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                cost_usd=0.0,  # the gateway's own event of the LLM call carries the cost
                latency_ms=latency_ms,
                stream=stream,
                retrieval=[
                    RetrievedChunk(chunk_id=p["chunk_id"], document_id=p["document_id"], score=p["score"])
                    for p in out.get("passages") or []
                ],
                prompt=question,
                response=out.get("answer"),
            )
        )

    async def aclose(self) -> None:
        """Flush what is buffered (bounded), then close."""
        await self._writer.stop()
        await self.redis.aclose()
