"""Stage 2, admit: the body held to its endpoint's allow-list and bounds, the model resolved to its route (and
the key's allow-list), then the request's upper bounds reserved against RPM, TPM and budget in one Redis step.
Its product is the request's context; a refusal is counted here, before any context exists."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from redis.exceptions import RedisError

from llmops_common.errors import APIError
from llmops_common.service_auth import token_matches
from services.gateway.cache import Prefetch, discard
from services.gateway.keys import KeyRecord
from services.gateway.limits import Limiter, LimitExceeded, Reservation
from services.gateway.metrics import GatewayMetrics
from services.gateway.replies import limit_error, state_store_error
from services.gateway.requests import ClientRequest, Kind, check_request, parse_request
from services.gateway.routing import ModelRoute, RouteTable
from services.gateway.stages.base import RequestContext

# Started before the reservation's round trip, to hide another one behind it (the cache's read).
Prefetcher = Callable[[KeyRecord, ClientRequest, ModelRoute], Prefetch | None]


def status_of(exc: BaseException) -> tuple[int, str]:
    """The status and code the caller sees for an exception (499: the client closed the request)."""
    if isinstance(exc, APIError):
        return exc.status, exc.code
    if isinstance(exc, RedisError):
        err = state_store_error(exc)
        return err.status, err.code
    if isinstance(exc, asyncio.CancelledError):
        return 499, "client_closed_request"
    return 500, "internal_error"


class Admit:
    name = "admit"

    def __init__(
        self,
        *,
        routes: RouteTable,
        limiter: Limiter,
        metrics: GatewayMetrics,
        default_max_tokens: int,
        max_output_tokens: int,
        max_messages: int,
        context_tokens: tuple[str, ...] = (),
        prefetch: Prefetcher | None = None,
    ) -> None:
        self.routes = routes
        self.limiter = limiter
        self.metrics = metrics
        self.default_max_tokens = default_max_tokens
        self.max_output_tokens = max_output_tokens
        self.max_messages = max_messages
        # Service tokens whose holders may mark retrieved context (the guardrails token: whoever may run the
        # content check itself may say a passage went through it; the gateway still re-checks it as content).
        self.context_tokens = tuple(t for t in context_tokens if t)
        self.prefetch = prefetch

    async def run(
        self, record: KeyRecord, kind: Kind, raw: bytes, started: float, service_token: str | None = None
    ) -> RequestContext:
        model = "unknown"  # the label of requests refused before routing (never the caller's free text)
        try:
            req = parse_request(kind, raw, self.default_max_tokens, self.max_output_tokens)
            route = self.resolve(record, req)
            model = route.name
            check_request(req, route, self.max_messages, trusted=token_matches(service_token, self.context_tokens))
            prefetch = self.prefetch(record, req, route) if self.prefetch is not None else None
            try:
                reservation = await self.reserve(record, req, route)
            except BaseException:
                discard(prefetch)
                raise
        except LimitExceeded as exc:
            self.metrics.limit_rejections.labels(record.team, exc.limit).inc()
            self.metrics.requests.labels(record.team, model, "402" if exc.is_budget else "429").inc()
            raise limit_error(exc) from None
        except BaseException as exc:
            self.count_refusal(record.team, model, exc)
            raise
        return RequestContext(record, req, route, reservation, started, prefetch=prefetch)

    def count_refusal(self, team: str, model: str, exc: BaseException) -> None:
        """Count a request that ended before it held a reservation (bad body, unknown model, state store down)."""
        self.metrics.requests.labels(team, model, str(status_of(exc)[0])).inc()

    def check_body(self, kind: Kind, raw: bytes) -> None:
        """Hold a body to the allow-list and bounds of its model's route without sending it (batch uploads).
        A model not routed now is left to run time, where it gets its 404."""
        req = parse_request(kind, raw, self.default_max_tokens, self.max_output_tokens)
        route = self.routes.get(req.model)
        if route is not None:
            check_request(req, route, self.max_messages)

    def resolve(self, record: KeyRecord, req: ClientRequest) -> ModelRoute:
        """The model's route: 404 when no route has it, 403 when the key may not use it."""
        route = self.routes.get(req.model)
        if route is None:
            raise APIError(
                404,
                "model_not_found",
                f"model '{req.model}' does not exist; available: {', '.join(sorted(self.routes.routes))}",
                param="model",
            )
        if not record.allows(req.model):
            raise APIError(
                403,
                "model_not_allowed",
                f"this key may not use model '{req.model}'; allowed: {', '.join(record.allowed_models)}",
                param="model",
            )
        return route

    async def reserve(self, record: KeyRecord, req: ClientRequest, route: ModelRoute) -> Reservation:
        # Reserve from upper bounds: every token is at least one byte of the body, and output is capped (per
        # choice, times n); the body forwarded carries exactly this bound.
        reserve_tokens = math.ceil(req.body_bytes / 4) + req.max_output_tokens
        reserve_cost = route.price.cost_nano(req.body_bytes, req.max_output_tokens)
        return await self.limiter.admit(record, reserve_tokens, reserve_cost)
