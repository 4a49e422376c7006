"""Stage 8, emit: the request's trace event, written in the settlement's Redis round trip (one per finished
request, not two); when that write fails it goes to the emitter, whose buffer retries while Redis is away."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from llmops_common.trace_events import EventEmitter
from llmops_common.trace_schema import TraceEvent
from services.gateway.call import trace_event
from services.gateway.metrics import GatewayMetrics
from services.gateway.stages.base import RequestContext

log = logging.getLogger("gateway.proxy")

Versions = Callable[[str], str | None]


class Emit:
    name = "emit"

    def __init__(self, events: EventEmitter, metrics: GatewayMetrics, version: Versions) -> None:
        self.events = events
        self.metrics = metrics
        self.version = version

    def event(
        self,
        ctx: RequestContext,
        status: int,
        prompt_tokens: int,
        completion_tokens: int,
        cost: int,
        elapsed: float,
        error_code: str | None,
    ) -> TraceEvent | None:
        """The event, or None when it does not match the schema: a bug, but the request was served, so it is
        logged and counted, never raised."""
        try:
            return trace_event(
                ctx, status, prompt_tokens, completion_tokens, cost, elapsed, error_code, self.version(ctx.req.model)
            )
        except ValidationError:
            log.exception("trace event does not match the schema; dropped")
            self.metrics.events_dropped.inc()
            return None

    def xadd(self, event: TraceEvent) -> Callable[[Any], None]:
        """The event's XADD, for the settlement's pipeline (the emitter's stream, bound and encoding)."""
        stream, maxlen = self.events.stream, self.events.maxlen
        fields = {"event": orjson.dumps(event.wire())}
        return lambda pipe: pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)

    def delivered(self, event: TraceEvent, written: bool) -> None:
        """After the settlement: counted when its round trip wrote the event, else handed to the emitter."""
        if written:
            self.metrics.events_emitted.inc()
        else:
            self.events.emit(event)
