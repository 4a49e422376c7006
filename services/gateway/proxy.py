"""The gateway's request path: `ProxyService` builds the stages (services/gateway/stages) from its collaborators
once, and forwards each request through them: authenticate -> admit -> check input -> cache -> route -> relay ->
check output -> settle -> emit. No HTTP framework code here.

Every request that got past authentication is recorded exactly once (requests_total, settlement of its
reservation, trace event), whatever ends it: an answer, a refusal, an upstream failure, a bug, or a client that
went away.
"""

from __future__ import annotations

from typing import Any

import anyio

from llmops_common.trace_events import EventEmitter
from services.gateway.cache import ResponseCache, discard
from services.gateway.catalogue import RegistryCatalogue
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import GuardrailsClient
from services.gateway.keys import KeyRecord, KeyStore
from services.gateway.limits import Limiter
from services.gateway.metrics import GatewayMetrics
from services.gateway.requests import Kind
from services.gateway.routing import RouteTable
from services.gateway.stages import (
    Admit,
    Answer,
    Authenticate,
    Background,
    CacheLookup,
    CheckInput,
    CheckOutput,
    Completed,
    Emit,
    Relay,
    RequestContext,
    Route,
    Settle,
    Stage,
    Streaming,
    status_of,
)
from services.gateway.stages.base import has_post
from services.gateway.upstream import UpstreamClient

__all__ = ["Completed", "ProxyService", "Streaming", "status_of"]


class ProxyService:
    """Orchestrates one OpenAI-compatible request through the gateway's policies (a thin forwarder over stages)."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        limiter: Limiter,
        routes: RouteTable,
        upstream: UpstreamClient,
        metrics: GatewayMetrics,
        events: EventEmitter | None,
        default_max_tokens: int,
        guard: GuardrailsClient | None = None,
        catalogue: RegistryCatalogue | None = None,
        stream_window_chars: int = 512,
        max_messages: int = 1000,
        max_output_tokens: int = 131_072,
        max_response_bytes: int = 4 * 1_048_576,
        context_tokens: tuple[str, ...] = (),
        cache: ResponseCache | None = None,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.routes = routes
        self.upstream = upstream
        self.metrics = metrics
        self.events = events
        self.catalogue = catalogue  # read on every use (the stages get `_version`): it may be replaced
        self.cache = cache
        self.background = Background()
        checks = GuardrailChecks(guard, stream_window_chars) if guard is not None else None
        self.authn = Authenticate(keys, metrics)
        self.settle = Settle(limiter, metrics, Emit(events, metrics, self._version) if events is not None else None)
        self._finish = self.settle.finish
        lookup = None
        if cache is not None:
            lookup = CacheLookup(cache, metrics, self._version, self._finish, self.background, checks is not None)
        self.admit = Admit(
            routes=routes,
            limiter=limiter,
            metrics=metrics,
            default_max_tokens=default_max_tokens,
            max_output_tokens=max_output_tokens,
            max_messages=max_messages,
            context_tokens=context_tokens,
            prefetch=lookup.prefetch if lookup is not None else None,
        )
        output = CheckOutput(checks) if checks is not None else None
        self.relay = Relay(metrics, output, max_response_bytes, self._finish, self.background, self._version)
        # The way in after admission; a stage whose collaborator is not configured is left out, not skipped.
        candidates: tuple[Stage | None, ...] = (
            CheckInput(checks) if checks is not None else None,
            lookup,
            Route(upstream),
            self.relay,
        )
        self.pipeline = tuple(s for s in candidates if s is not None)

    @property
    def pipeline(self) -> tuple[Stage, ...]:
        """The stages after admission, in order."""
        return self._pipeline

    @pipeline.setter
    def pipeline(self, stages: tuple[Stage, ...]) -> None:
        self._pipeline = stages
        # For each stage that may answer: the `post` hooks to run then (reverse order, only stages that have one),
        # worked out once here rather than walked per request.
        self._posts = tuple(tuple(s for s in reversed(stages[: i + 1]) if has_post(s)) for i in range(len(stages)))

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        """Resolve the bearer key; 401 for missing, unknown or revoked keys."""
        return await self.authn.run(authorization)

    def list_models(self, record: KeyRecord) -> dict[str, Any]:
        """Models this key may call, in /v1/models shape."""
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "llmops",
                "price_per_1m": {"input": r.price.input_per_1m, "output": r.price.output_per_1m},
                "version": self._version(name),
            }
            for name, r in sorted(self.routes.routes.items())
            if record.allows(name)
        ]
        return {"object": "list", "data": data}

    def check_body(self, kind: Kind, raw: bytes) -> None:
        """Hold a body to the allow-list and bounds of its model's route without sending it (batch uploads)."""
        self.admit.check_body(kind, raw)

    def count_refusal(self, team: str, model: str, exc: BaseException) -> None:
        """Count a request that ended before it held a reservation (bad body, unknown model, state store down)."""
        self.admit.count_refusal(team, model, exc)

    async def forward(
        self, record: KeyRecord, kind: Kind, raw: bytes, started: float, service_token: str | None = None
    ) -> Answer:
        """Admit, then run the pipeline (`service_token`: x-llmops-service-token, if sent)."""
        ctx = await self.admit.run(record, kind, raw, started, service_token)
        try:
            return await self.run(ctx)
        except BaseException as exc:
            if not ctx.recorded:  # whatever ended it, the reservation is settled and the request counted
                status, code = status_of(exc)  # (a bug is logged by the app's error handler)
                with anyio.CancelScope(shield=True):
                    await self._finish(ctx, status, None, error_code=code)
            raise
        finally:
            discard(ctx.prefetch)

    async def run(self, ctx: RequestContext) -> Answer:
        """Each stage's `pre` in order until one answers, then the `post` of each stage that ran, in reverse."""
        for ran, stage in enumerate(self._pipeline):
            answer = await stage.pre(ctx)
            if answer is not None:
                for hook in self._posts[ran]:
                    hook.post(ctx, answer)
                return answer
        raise RuntimeError("the pipeline ended without an answer (the relay stage answers every request)")

    def _version(self, model: str) -> str | None:
        return self.catalogue.versions.get(model) if self.catalogue else None

    async def drain(self) -> None:
        """Wait for background settlements (shutdown)."""
        await self.background.drain()
