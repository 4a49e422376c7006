"""RAG's own trace events: one per answer request, on the same Redis stream as the gateway's, so the feedback
service sees what was retrieved (chunk ids and scores) next to the LLM call the gateway metered.

Emission never blocks or fails a request: each event is written by a background task; errors are logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmops_common.request_id import current_request_id
from llmops_common.telemetry import current_trace_id
from services.rag.gateway import Caller

log = logging.getLogger("rag.events")


class RagEvents:
    """XADDs trace events (schema 1, endpoint `rag`) in the background."""

    def __init__(self, redis_url: str, stream: str, maxlen: int = 1_000_000) -> None:
        self.redis = Redis.from_url(redis_url)
        self.stream = stream
        self.maxlen = maxlen
        self._pending: set[asyncio.Task[None]] = set()

    def record(
        self, caller: Caller, question: str, out: dict[str, Any], status: int, started: float, stream: bool = False
    ) -> None:
        """Queue the event of one answer request (`out` is the answer body, or the error's envelope)."""
        usage = out.get("usage") or {}
        event = {
            "schema": 1,
            "request_id": current_request_id() or f"rag-{time.time_ns()}",
            "trace_id": current_trace_id(),
            "ts": time.time(),
            "team": caller.team,
            "project": caller.project,
            "key_id": caller.key_id,
            "model": out.get("model") or "unknown",
            "model_version": out.get("model_version"),
            "deployment": None,
            "prompt_version": out.get("prompt_version"),
            "endpoint": "rag",
            "status": status,
            "error_code": (out.get("error") or {}).get("code"),
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "cost_usd": 0.0,  # the gateway's own event of the LLM call carries the cost
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "ttft_ms": None,
            "stream": stream,
            "guardrails": [],
            "retrieval": [
                {"chunk_id": p["chunk_id"], "document_id": p["document_id"], "score": p["score"]}
                for p in out.get("passages") or []
            ],
            "prompt": question,
            "response": out.get("answer"),
            "mean_logprob": None,
        }
        task = asyncio.create_task(self._write(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, event: dict[str, Any]) -> None:
        try:
            await self.redis.xadd(self.stream, {"event": orjson.dumps(event)}, maxlen=self.maxlen, approximate=True)
        except RedisError as exc:
            log.warning("rag trace event not written", extra={"error": str(exc)})

    async def aclose(self) -> None:
        """Finish pending writes, then close."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.redis.aclose()
