"""The gateway's request path, in order: authenticate -> admit (policy, limits) -> check input -> route ->
relay -> check output -> settle -> emit. No HTTP framework code here.

Every request that got past authentication is recorded exactly once (requests_total, settlement of its
reservation, trace event), whatever ends it: an answer, a refusal, an upstream failure, a bug, or a client that
went away.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import orjson
from pydantic import ValidationError
from redis.exceptions import RedisError

from llmops_common.errors import APIError
from llmops_common.service_auth import bearer_token, token_matches
from llmops_common.trace_events import EventEmitter
from llmops_common.trace_schema import TraceEvent
from services.gateway.cache import (
    CachedAnswer,
    Prefetch,
    ResponseCache,
    cache_policy,
    deterministic,
    discard,
    replay_stream,
    route_fingerprint,
)
from services.gateway.call import Call, span_usage, trace_event, usage_tokens
from services.gateway.catalogue import RegistryCatalogue
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import GuardrailsClient, Verdict
from services.gateway.keys import KeyRecord, KeyStore
from services.gateway.limits import Limiter, LimitExceeded, Reservation
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.relay import Completed, Relay, Streaming
from services.gateway.replies import limit_error, state_store_error
from services.gateway.requests import PATHS, ClientRequest, Kind, check_request, parse_request
from services.gateway.routes_config import CacheFields
from services.gateway.routing import ModelRoute, RouteTable
from services.gateway.semantic_cache import Probe
from services.gateway.upstream import NoDeploymentAvailable, UpstreamClient

__all__ = ["Completed", "ProxyService", "Streaming"]
log = logging.getLogger("gateway.proxy")


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


class _Children:
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


class ProxyService:
    """Orchestrates one OpenAI-compatible request through the gateway's policies."""

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
        self.default_max_tokens = default_max_tokens
        self.guard = guard
        self.catalogue = catalogue
        self.max_messages = max_messages
        self.max_output_tokens = max_output_tokens
        # Service tokens whose holders may mark retrieved context (the guardrails token: whoever may run the
        # content check itself may say a passage went through it; the gateway still re-checks it as content).
        self.context_tokens = tuple(t for t in context_tokens if t)
        self._pending: set[asyncio.Task[Any]] = set()
        self.cache = cache
        self._fingerprints: dict[str, str] = {}
        self.checks = GuardrailChecks(guard, stream_window_chars) if guard is not None else None
        self.relay = Relay(metrics, self.checks, max_response_bytes, self._finish, self._in_background)
        self._requests = _Children(metrics.requests)
        self._latency = _Children(metrics.latency)
        self._tokens = _Children(metrics.tokens)
        self._cost = _Children(metrics.cost)

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        """Resolve the bearer key; 401 for missing, unknown or revoked keys."""
        token = bearer_token(authorization)
        if token is None:
            self.metrics.auth_failures.labels("missing").inc()
            raise APIError(401, "missing_api_key", "no API key: send `Authorization: Bearer <key>`")
        record = await self.keys.lookup(token)
        if record is None:
            self.metrics.auth_failures.labels("unknown").inc()
            raise APIError(401, "invalid_api_key", "the API key is not valid")
        if record.status != "active":
            self.metrics.auth_failures.labels("revoked").inc()
            raise APIError(401, "revoked_api_key", "the API key has been revoked")
        return record

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
        """Hold a body to the allow-list and bounds of its model's route without sending it (batch uploads).
        A model not routed now is left to run time, where it gets its 404."""
        req = parse_request(kind, raw, self.default_max_tokens, self.max_output_tokens)
        route = self.routes.get(req.model)
        if route is not None:
            check_request(req, route, self.max_messages)

    def count_refusal(self, team: str, model: str, exc: BaseException) -> None:
        """Count a request that ended before it held a reservation (bad body, unknown model, state store down)."""
        self.metrics.requests.labels(team, model, str(status_of(exc)[0])).inc()

    async def forward(
        self, record: KeyRecord, kind: Kind, raw: bytes, started: float, service_token: str | None = None
    ) -> Completed | Streaming:
        """Admit, check, route, relay and meter one request (`service_token`: x-llmops-service-token, if sent)."""
        model = "unknown"  # the label of requests refused before routing (never the caller's free text)
        try:
            req = parse_request(kind, raw, self.default_max_tokens, self.max_output_tokens)
            route = self._route(record, req)
            model = route.name
            check_request(req, route, self.max_messages, trusted=token_matches(service_token, self.context_tokens))
            prefetch = self._prefetch(record, req, route)
            try:
                reservation = await self._admit(record, req, route)
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
        call = Call(record, req, route, reservation, started)
        try:
            return await self._serve(call, prefetch)
        except BaseException as exc:
            if not call.recorded:  # whatever ended it, the reservation is settled and the request counted
                status, code = status_of(exc)  # (a bug is logged by the app's error handler)
                with anyio.CancelScope(shield=True):
                    await self._finish(call, status, None, error_code=code)
            raise
        finally:
            discard(prefetch)

    def _cache_policy(self, record: KeyRecord, req: ClientRequest, route: ModelRoute) -> CacheFields | None:
        """The cache settings when this request may be answered from the cache (opted in, deterministic)."""
        policy = cache_policy(record, route) if self.cache is not None else None
        return policy if policy is not None and deterministic(req.payload, policy) else None

    def _prefetch(self, record: KeyRecord, req: ClientRequest, route: ModelRoute) -> Prefetch | None:
        """Start reading the cache while admission (and the input check) run: it hides the read's round trip. The
        entry is used only once both passed, and only if the input check left the body unchanged (same key)."""
        if self.cache is None or self._cache_policy(record, req, route) is None:
            return None
        key = self.cache.key(record.team, req.kind, req.payload, self._served_version(route))
        task = asyncio.create_task(self.cache.fetch(key))
        self._pending.add(task)  # a strong reference until done (asyncio holds tasks weakly)
        task.add_done_callback(self._pending.discard)
        return Prefetch(key, task)

    def _route(self, record: KeyRecord, req: ClientRequest) -> ModelRoute:
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

    async def _admit(self, record: KeyRecord, req: ClientRequest, route: ModelRoute) -> Reservation:
        # Reserve from upper bounds: every token is at least one byte of the body, and output is capped (per
        # choice, times n); the body forwarded carries exactly this bound.
        reserve_tokens = math.ceil(req.body_bytes / 4) + req.max_output_tokens
        reserve_cost = route.price.cost_nano(req.body_bytes, req.max_output_tokens)
        return await self.limiter.admit(record, reserve_tokens, reserve_cost)

    async def _serve(self, call: Call, prefetch: Prefetch | None = None) -> Completed | Streaming:
        req = call.req
        probe: Probe | None = None  # the semantic lookup of a cacheable miss; its vector is indexed if stored
        if self.checks is not None:
            try:
                call.verdicts.append(await self.checks.check_input(call))
            except APIError as exc:  # blocked, too large to check, or guardrails down under a fail-closed policy
                call.input_withheld = True
                decision = "block" if exc.code == "guardrail_blocked" else "unavailable"
                call.verdicts.append(Verdict("input", decision, exc.extra.get("findings", [])))
                raise
        # A cached answer is used only now: after admission (rpm, budget) and after the input check, so a hit never
        # bypasses a limit or a block, and the key is the body as it would be forwarded (redactions included).
        policy = self._cache_policy(call.record, req, call.route)
        if policy is not None:
            assert self.cache is not None
            key = self.cache.key(call.record.team, req.kind, req.payload, self._served_version(call.route))
            if prefetch is not None and prefetch.key == key:
                fetched = await prefetch.task
            else:  # redacted by the input check (or a version changed meanwhile): read the key it became
                discard(prefetch)
                fetched = await self.cache.fetch(key)
            hit = self.cache.answer(fetched, req.model)
            if hit is None:  # the semantic layer (when the route enables it): a close rewording's stored answer
                probe = self.cache.semantic_probe(
                    call.record.team, req.kind, req.payload, self._served_version(call.route), policy
                )
                if probe is not None:
                    hit = await self.cache.semantic_get(probe, req.model)
            if hit is not None:
                return self._serve_hit(call, hit, policy)
            if not req.stream:  # a whole answer is stored; a streamed one is not assembled for the cache
                call.cache_key = key
        bodies = {dep.name: self._upstream_body(req, dep.model, call.route) for dep in call.route.deployments}
        try:
            call.up = await self.upstream.open(call.route, PATHS[req.kind], bodies, req.stream)
        except NoDeploymentAvailable as exc:
            if exc.all_overloaded:
                raise APIError(
                    429,
                    "upstream_overloaded",
                    f"every deployment of '{req.model}' is at capacity; retry shortly",
                    # The deployments' own hint (the soonest), from their measured service time.
                    headers={"retry-after": str(max(1, math.ceil(exc.retry_after_s)))},
                ) from None
            raise APIError(
                503 if exc.all_open else 502,
                "no_deployment_available",
                f"no deployment of '{req.model}' could serve the request: " + "; ".join(exc.attempts),
                # Every circuit open: say when the first one lets a request through (a 503 must tell when to
                # come back; a restarting engine otherwise saw clients retry at once for the whole cool-down).
                headers={"retry-after": str(max(1, math.ceil(exc.retry_after_s)))} if exc.all_open else None,
            ) from None
        headers = {"x-llmops-deployment": call.up.deployment.name}
        if version := self._version(req.model):
            headers["x-llmops-model-version"] = version
        if call.verdicts:
            headers["x-llmops-guardrails"] = call.guardrails_header()
        if call.up.fallbacks:
            headers["x-llmops-fallbacks"] = str(call.up.fallbacks)
        if policy is not None:
            headers["x-llmops-cache"] = "miss"
        if req.stream and call.up.response.status == 200:
            headers["x-llmops-overhead-ms"] = f"{(call.up.started - call.started) * 1000:.3f}"
            call.recorded = True  # from here the stream's own finally records it, whenever it ends
            return Streaming(self.relay.stream(call), headers)
        result = await self.relay.complete(call, headers)
        if policy is not None and call.cache_key is not None and result.status == 200:
            self._store(call, result.body, policy, probe)
        return result

    def _served_version(self, route: ModelRoute) -> str:
        """What the cache keys on: the registry's production version, else where the route sends the model."""
        version = self._version(route.name)
        if version:
            return "registry:" + version
        if route.name not in self._fingerprints:
            self._fingerprints[route.name] = route_fingerprint(route)
        return self._fingerprints[route.name]

    def _serve_hit(self, call: Call, hit: CachedAnswer, policy: CacheFields) -> Completed | Streaming:
        """A cached answer: no upstream call; the stored output verdict applies; charged the route's hit fraction
        of its price, no tokens; recorded (metrics, settlement, trace event flagged cached) like any answer."""
        req = call.req
        full = call.route.price.cost_nano(*usage_tokens(hit.usage))
        call.cached_cost = round(full * policy.hit_cost_fraction)
        self.metrics.cache_saved.labels(req.model).inc(nano_to_usd(full - call.cached_cost))
        call.response_text = hit.texts()
        if hit.output is not None:
            call.verdicts.append(Verdict("output", str(hit.output.get("decision")), hit.output.get("findings") or []))
        headers = {"x-llmops-cache": "hit", "x-llmops-cache-match": hit.match_header}
        if version := self._version(req.model):
            headers["x-llmops-model-version"] = version
        if call.verdicts:
            headers["x-llmops-guardrails"] = call.guardrails_header()
        headers["x-llmops-overhead-ms"] = f"{(time.perf_counter() - call.started) * 1000:.3f}"
        cost_usd = nano_to_usd(call.cached_cost)
        span_usage(call, {})  # the span says what was used: no tokens
        call.recorded = True  # the background finish below is this call's one record
        self._in_background(self._finish(call, 200, None))
        if req.stream:
            usage = dict(hit.usage, cost_usd=cost_usd) if req.wants_usage else None
            return Streaming(replay_stream(hit.data, req.kind, usage), headers)
        headers["x-llmops-cost-usd"] = f"{cost_usd:.9f}"
        return Completed(200, hit.body, headers)

    def _store(self, call: Call, body: bytes, policy: CacheFields, probe: Probe | None = None) -> None:
        """Offer a checked 200 answer to the cache, in the background (the caller never waits for it)."""
        assert self.cache is not None and call.cache_key is not None
        output = next((v for v in reversed(call.verdicts) if v.stage == "output"), None)
        if call.output_blocked or (
            self.checks is not None and call.response_text and (output is None or output.decision == "unavailable")
        ):
            # An answer the output check could not vouch for is relayed once, never reused.
            self.metrics.cache_stores.labels(call.req.model, "unchecked").inc()
            return
        deployment = call.up.deployment.name if call.up else None
        verdict = output.as_event() if output is not None else None
        self._in_background(
            self.cache.put_and_index(
                call.cache_key, call.record.team, call.req.model, body, verdict, deployment, policy, probe
            )
        )

    def _version(self, model: str) -> str | None:
        return self.catalogue.versions.get(model) if self.catalogue else None

    def _upstream_body(self, req: ClientRequest, upstream_model: str, route: ModelRoute) -> bytes:
        body = dict(req.payload, model=upstream_model)
        if route.mean_logprob:  # internal: clients cannot send this field (the gateway refuses unknown fields)
            body["mean_logprob"] = True
        if req.stream:
            body["stream_options"] = {"include_usage": True}  # metering needs the final usage chunk
        return orjson.dumps(body)

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)  # keep a reference until done (asyncio holds tasks weakly)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for background settlements (shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _finish(
        self, call: Call, status: int, usage: dict[str, Any] | None, error_code: str | None = None
    ) -> int:
        """Record metrics and the trace event, then settle the reservation; returns the cost in nano-USD."""
        call.recorded = True
        prompt_tokens, completion_tokens = usage_tokens(usage or {})
        cost = call.route.price.cost_nano(prompt_tokens, completion_tokens)
        if call.cached_cost is not None:  # a cache hit: no tokens were used, its price is the route's fraction
            cost = call.cached_cost
        team, model = call.record.team, call.req.model
        elapsed = time.perf_counter() - call.started
        self._requests(team, model, str(status)).inc()
        self._latency(model).observe(elapsed)
        if prompt_tokens or completion_tokens:
            self._tokens(team, model, "prompt").inc(prompt_tokens)
            self._tokens(team, model, "completion").inc(completion_tokens)
        if cost:
            self._cost(team, model).inc(nano_to_usd(cost))
        if completion_tokens > call.req.max_output_tokens:
            # The engine ignored the bound it was sent: charged as used (it was), but never silently.
            self.metrics.usage_over_reservation.labels(model).inc()
            log.warning(
                "completion tokens over the reserved bound",
                extra={"model": model, "completion_tokens": completion_tokens, "bound": call.req.max_output_tokens},
            )
        event = None
        if self.events is not None:
            try:
                event = trace_event(
                    call, status, prompt_tokens, completion_tokens, cost, elapsed, error_code, self._version(model)
                )
            except ValidationError:  # a bug, but the request was served: logged and counted, never raised
                log.exception("trace event does not match the schema; dropped")
                self.metrics.events_dropped.inc()
        # The event rides in the settlement's round trip (one per finished request, not two); when that write
        # fails it goes to the emitter, whose buffer retries while Redis is away.
        written = False
        try:
            written = await self.limiter.settle(
                call.reservation, prompt_tokens + completion_tokens, cost, self._xadd(event) if event else None
            )
        finally:
            if event is not None:
                if written:
                    self.metrics.events_emitted.inc()
                else:
                    assert self.events is not None
                    self.events.emit(event)
        return cost

    def _xadd(self, event: TraceEvent) -> Callable[[Any], None]:
        """The trace event's XADD, for the settlement's pipeline (the emitter's stream, bound and encoding)."""
        assert self.events is not None
        stream, maxlen = self.events.stream, self.events.maxlen
        fields = {"event": orjson.dumps(event.wire())}
        return lambda pipe: pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
