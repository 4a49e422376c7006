"""The cache stage (between check input and route; opt-in per key and route): a stored answer to the same
deterministic request, or to a close rewording on routes with the semantic layer. Its read starts before the
reservation (`prefetch`, the admit stage's hook); the entry is used only after admission (rpm, budget) and the
input check, so a hit never bypasses a limit or a block, and the key is the body as it would be forwarded
(redactions included). `post` offers a checked 200 answer to the cache."""

from __future__ import annotations

import asyncio
import time

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
from services.gateway.call import span_usage, usage_tokens
from services.gateway.guardrails import Verdict
from services.gateway.keys import KeyRecord
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.requests import ClientRequest
from services.gateway.routes_config import CacheFields
from services.gateway.routing import ModelRoute
from services.gateway.stages.base import Answer, Background, Completed, RequestContext, Streaming
from services.gateway.stages.emit import Versions, answered_version
from services.gateway.stages.relay import Finish


class CacheLookup:
    name = "cache"

    def __init__(
        self,
        cache: ResponseCache,
        metrics: GatewayMetrics,
        version: Versions,
        finish: Finish,
        background: Background,
        checked: bool,
    ) -> None:
        self.cache = cache
        self.metrics = metrics
        self.version = version
        self.finish = finish
        self.background = background
        self.checked = checked  # an output check runs: an answer it could not vouch for is never stored
        self._fingerprints: dict[str, str] = {}

    def policy(self, record: KeyRecord, req: ClientRequest, route: ModelRoute) -> CacheFields | None:
        """The cache settings when this request may be answered from the cache (opted in, deterministic)."""
        policy = cache_policy(record, route)
        return policy if policy is not None and deterministic(req.payload, policy) else None

    def prefetch(self, record: KeyRecord, req: ClientRequest, route: ModelRoute) -> Prefetch | None:
        """Start reading the cache while admission (and the input check) run: it hides the read's round trip."""
        if self.policy(record, req, route) is None:
            return None
        key = self.cache.key(record.team, req.kind, req.payload, self.served_version(route))
        return Prefetch(key, self.background.track(asyncio.create_task(self.cache.fetch(key))))

    def served_version(self, route: ModelRoute) -> str:
        """What the cache keys on: the registry's production version, else where the route sends the model."""
        version = self.version(route.name)
        if version:
            return "registry:" + version
        if route.name not in self._fingerprints:
            self._fingerprints[route.name] = route_fingerprint(route)
        return self._fingerprints[route.name]

    async def pre(self, ctx: RequestContext) -> Answer | None:
        req = ctx.req
        policy = ctx.cache_policy = self.policy(ctx.record, req, ctx.route)
        if policy is None:
            return None
        served = self.served_version(ctx.route)
        key = self.cache.key(ctx.record.team, req.kind, req.payload, served)
        prefetch = ctx.prefetch
        if prefetch is not None and prefetch.key == key:
            fetched = await prefetch.task
        else:  # redacted by the input check (or a version changed meanwhile): read the key it became
            discard(prefetch)
            fetched = await self.cache.fetch(key)
        hit = self.cache.answer(fetched, req.model)
        if hit is None:  # the semantic layer (when the route enables it): a close rewording's stored answer
            ctx.probe = self.cache.semantic_probe(ctx.record.team, req.kind, req.payload, served, policy)
            if ctx.probe is not None:
                hit = await self.cache.semantic_get(ctx.probe, req.model)
        if hit is not None:
            return self.serve_hit(ctx, hit, policy)
        if not req.stream:  # a whole answer is stored; a streamed one is not assembled for the cache
            ctx.cache_key = key
        return None

    def serve_hit(self, ctx: RequestContext, hit: CachedAnswer, policy: CacheFields) -> Answer:
        """A cached answer: no upstream call; the stored output verdict applies; charged the route's hit fraction
        of its price, no tokens; recorded (metrics, settlement, trace event flagged cached) like any answer."""
        req = ctx.req
        full = ctx.route.price.cost_nano(*usage_tokens(hit.usage))
        ctx.cached_cost = round(full * policy.hit_cost_fraction)
        self.metrics.cache_saved.labels(req.model).inc(nano_to_usd(full - ctx.cached_cost))
        ctx.response_text = hit.texts()
        if hit.output is not None:
            ctx.verdicts.append(Verdict("output", str(hit.output.get("decision")), hit.output.get("findings") or []))
        headers = {"x-llmops-cache": "hit", "x-llmops-cache-match": hit.match_header}
        if version := self.version(req.model):
            headers["x-llmops-model-version"] = version
        if ctx.verdicts:
            headers["x-llmops-guardrails"] = ctx.guardrails_header()
        headers["x-llmops-overhead-ms"] = f"{(time.perf_counter() - ctx.started) * 1000:.3f}"
        cost_usd = nano_to_usd(ctx.cached_cost)
        span_usage(ctx, {})  # the span says what was used: no tokens
        ctx.recorded = True  # the background finish below is this call's one record
        self.background.run(self.finish(ctx, 200, None))
        if req.stream:
            usage = dict(hit.usage, cost_usd=cost_usd) if req.wants_usage else None
            return Streaming(replay_stream(hit.data, req.kind, usage), headers)
        headers["x-llmops-cost-usd"] = f"{cost_usd:.9f}"
        return Completed(200, hit.body, headers)

    def post(self, ctx: RequestContext, answer: Answer) -> None:
        """Offer a checked 200 answer to the cache, in the background (the caller never waits for it)."""
        policy = ctx.cache_policy
        if policy is None or ctx.cache_key is None or not isinstance(answer, Completed) or answer.status != 200:
            return
        output = next((v for v in reversed(ctx.verdicts) if v.stage == "output"), None)
        if ctx.output_blocked or (
            self.checked and ctx.response_text and (output is None or output.decision == "unavailable")
        ):
            # An answer the output check could not vouch for is relayed once, never reused.
            self.metrics.cache_stores.labels(ctx.req.model, "unchecked").inc()
            return
        if (production := self.version(ctx.req.model)) and answered_version(ctx, self.version) != production:
            # A canary deployment's answer (another version of the model): the key names production's version, so
            # storing it would serve the challenger's words to every later caller as production's.
            self.metrics.cache_stores.labels(ctx.req.model, "other_version").inc()
            return
        deployment = ctx.up.deployment.name if ctx.up else None
        verdict = output.as_event() if output is not None else None
        self.background.run(
            self.cache.put_and_index(
                ctx.cache_key, ctx.record.team, ctx.req.model, answer.body, verdict, deployment, policy, ctx.probe
            )
        )
