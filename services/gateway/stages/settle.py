"""Stage 7, settle: the one record of a request (metrics, the reservation settled to what was used, the trace
event). Whichever stage ends a request calls `finish` exactly once: the relay (answer or stream end), the cache
(a hit), or the forwarder (a refusal or a failure after admission)."""

from __future__ import annotations

import logging
import time
from typing import Any

from services.gateway.call import usage_tokens
from services.gateway.limits import Limiter
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.stages.base import RequestContext
from services.gateway.stages.emit import Emit

log = logging.getLogger("gateway.proxy")


class Children:
    """A labelled metric's children by label values, each looked up once: `labels()` validates the values and takes
    a lock on every call, on every request. Holds no more than the metric itself keeps (one child per values)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


class Settle:
    name = "settle"

    def __init__(self, limiter: Limiter, metrics: GatewayMetrics, emit: Emit | None) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self.emit = emit
        self._requests = Children(metrics.requests)
        self._latency = Children(metrics.latency)
        self._tokens = Children(metrics.tokens)
        self._cost = Children(metrics.cost)

    async def finish(
        self, ctx: RequestContext, status: int, usage: dict[str, Any] | None, error_code: str | None = None
    ) -> int:
        """Record metrics and the trace event, then settle the reservation; returns the cost in nano-USD."""
        ctx.recorded = True
        prompt_tokens, completion_tokens = usage_tokens(usage or {})
        cost = ctx.route.price.cost_nano(prompt_tokens, completion_tokens)
        if ctx.cached_cost is not None:  # a cache hit: no tokens were used, its price is the route's fraction
            cost = ctx.cached_cost
        team, model = ctx.record.team, ctx.req.model
        elapsed = time.perf_counter() - ctx.started
        self._requests(team, model, str(status)).inc()
        self._latency(model).observe(elapsed)
        if prompt_tokens or completion_tokens:
            self._tokens(team, model, "prompt").inc(prompt_tokens)
            self._tokens(team, model, "completion").inc(completion_tokens)
        if cost:
            self._cost(team, model).inc(nano_to_usd(cost))
        if completion_tokens > ctx.req.max_output_tokens:
            # The engine ignored the bound it was sent: charged as used (it was), but never silently.
            self.metrics.usage_over_reservation.labels(model).inc()
            log.warning(
                "completion tokens over the reserved bound",
                extra={"model": model, "completion_tokens": completion_tokens, "bound": ctx.req.max_output_tokens},
            )
        emit = self.emit
        event = None
        if emit is not None:
            event = emit.event(ctx, status, prompt_tokens, completion_tokens, cost, elapsed, error_code)
        written = False
        try:
            written = await self.limiter.settle(
                ctx.reservation, prompt_tokens + completion_tokens, cost, emit.xadd(event) if event and emit else None
            )
        finally:
            if event is not None and emit is not None:
                emit.delivered(event, written)
        return cost
