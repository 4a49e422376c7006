"""Stage 8, emit: the request's trace event, written in the settlement's Redis round trip (one per finished
request, not two); when that write fails it goes to the emitter, whose buffer retries while Redis is away."""

from __future__ import annotations

import logging
import re
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
# What a deployment may say its version is (the inference service's x-model-version: a registry version number or
# a label); anything else is ignored and the registry's version stands.
_VERSION = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def answered_version(ctx: RequestContext, versions: Versions) -> str | None:
    """The version that answered this request: the deployment's own `x-model-version` when it sent one, else the
    registry's production version of the model. The two differ under a canary: a second deployment of the same model
    serving the challenger beside production (module 9) must not be reported, or fed back, as production."""
    if ctx.up is not None:
        own = ctx.up.response.headers.get("x-model-version") or ""
        if _VERSION.fullmatch(own):
            return own
    return versions(ctx.req.model)


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
                ctx,
                status,
                prompt_tokens,
                completion_tokens,
                cost,
                elapsed,
                error_code,
                answered_version(ctx, self.version),
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
