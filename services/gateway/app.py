"""App factory of the gateway: `uvicorn services.gateway.app:create_app --factory`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from llmops_common.app import build_service_app
from llmops_common.drain import Drain, DrainMiddleware
from llmops_common.errors import error_response
from llmops_common.registry_client import AsyncRegistryClient
from llmops_common.trace_events import EventEmitter
from services.gateway.admin import AdminService
from services.gateway.batch import BatchWorker, PathBodyLimitMiddleware
from services.gateway.batch.setup import build_batch
from services.gateway.budgets import BudgetWatcher
from services.gateway.cache import ResponseCache
from services.gateway.catalogue import RegistryCatalogue
from services.gateway.guardrails import GuardrailsClient
from services.gateway.keycache import KeyCache, KeyChangeListener
from services.gateway.keys import KeyStore
from services.gateway.limits import Limiter
from services.gateway.metrics import GatewayMetrics
from services.gateway.metrics_auth import install_metrics_auth
from services.gateway.proxy import ProxyService
from services.gateway.replies import state_store_error
from services.gateway.routes import admin as admin_routes
from services.gateway.routes import batch as batch_routes
from services.gateway.routes import openai as openai_routes
from services.gateway.routes import usage as usage_routes
from services.gateway.routing import RouteTable
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import UpstreamClient
from services.gateway.usage import UsageMeter

VERSION = "0.1.0"
log = logging.getLogger("gateway.app")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the gateway; Redis and the upstream pool are opened in the lifespan."""
    settings = settings or GatewaySettings()
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    routes = RouteTable.from_file(settings.routes_file)  # fail fast on a bad routes file
    metrics.watch_circuits(routes.deployments)
    batch_lines = BatchWorker.lines_counter(registry)
    drain = Drain(settings.shutdown_drain_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A blocking pool: under a burst, a request waits (bounded) for a connection instead of failing.
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=5,
            # Explicit, so a hung Redis costs a request a known bound (503 state_store_unavailable), not a wait.
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            # After Redis restarts, every pooled connection is dead: resend once on a fresh one instead of failing
            # one request per stale connection. Never on a timeout (the command may have run; the bound would
            # double). The gateway's scripts are idempotent (admission marker), so a resend cannot charge twice.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=True,
            health_check_interval=30,
        )
        redis = Redis(connection_pool=pool)
        drain.install()  # here: uvicorn has installed its signal handlers by the time the lifespan starts
        keys = KeyStore(redis, settings.redis_prefix, KeyCache(settings.key_cache_ttl_s))
        key_changes = KeyChangeListener(redis, keys.changes_channel, keys.cache)
        if settings.key_cache_ttl_s > 0:
            await key_changes.start()
        limiter = Limiter(redis, settings.redis_prefix)
        budgets = BudgetWatcher(keys, limiter, metrics, settings.budget_refresh_s)
        if settings.budget_refresh_s > 0:
            budgets.start()
        upstream = UpstreamClient(metrics)
        await upstream.start()
        events = EventEmitter(
            redis,
            settings.events_stream,
            settings.events_maxlen,
            emitted=metrics.events_emitted,
            dropped=metrics.events_dropped,
        )
        if settings.events_enabled:
            await events.start()
        catalogue = None
        if settings.registry_url:
            client = AsyncRegistryClient(settings.registry_url, timeout_s=5.0)
            catalogue = RegistryCatalogue(client, routes, settings.registry_refresh_s)
            await catalogue.start()
        guard = None
        if settings.guardrails_url:
            guard = GuardrailsClient(
                settings.guardrails_url,
                settings.guardrails_timeout_ms,
                settings.guardrails_fail_mode,
                metrics,
                token=settings.guardrails_token.get_secret_value() if settings.guardrails_token else None,
                policy_ttl_s=settings.guardrails_policy_ttl_s,
                uds=settings.guardrails_uds,
            )
            await guard.start()
        app.state.redis = redis
        app.state.admin = AdminService(keys, limiter)
        app.state.usage = UsageMeter(limiter, metrics, settings.embedding_price_per_1m)
        app.state.proxy = ProxyService(
            keys=keys,
            limiter=limiter,
            routes=routes,
            upstream=upstream,
            metrics=metrics,
            events=events if settings.events_enabled else None,
            default_max_tokens=settings.default_max_tokens,
            guard=guard,
            catalogue=catalogue,
            stream_window_chars=settings.guardrails_stream_window_chars,
            max_messages=settings.max_messages,
            max_output_tokens=settings.max_output_tokens,
            max_response_bytes=settings.max_response_bytes,
            context_tokens=(settings.guardrails_token.get_secret_value(),) if settings.guardrails_token else (),
            cache=ResponseCache(
                redis,
                settings.redis_prefix,
                metrics,
                settings.cache_team_bytes_max,
                checked=guard is not None,
                semantic_quantized=settings.cache_semantic_int8,
                semantic_remembered=settings.cache_semantic_embeddings,
            )
            if settings.cache_enabled
            else None,
        )
        app.state.batch, batch_worker = build_batch(settings, redis, app.state.proxy, batch_lines)
        await batch_worker.start()
        # Everything built so far lives as long as the process: moved out of the collector's generations, it is
        # no longer walked by every full collection the requests' garbage triggers (CPU per request).
        gc.freeze()
        try:
            yield
        finally:
            await batch_worker.stop()  # first: lines in flight still need the upstream pool and Redis
            await app.state.proxy.drain()
            if settings.events_enabled:
                await events.stop()
            await upstream.stop()
            await key_changes.stop()
            if guard is not None:
                await guard.stop()
            if catalogue is not None:
                await catalogue.stop()
            await budgets.stop()
            await limiter.close()
            await redis.aclose()

    async def readiness() -> dict[str, bool]:
        try:
            redis_ok = bool(await app.state.redis.ping())
        except (RedisError, AttributeError, OSError):
            redis_ok = False
        return {"redis": redis_ok, "routes": bool(routes.routes)}

    app = build_service_app(
        name="gateway",
        version=VERSION,
        description="OpenAI-compatible front door: virtual keys, limits, budgets, routing, fallback, metering.",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(
        PathBodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_path="/v1/files",
        upload_max_bytes=settings.batch_max_file_bytes,
    )
    metrics_token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    install_metrics_auth(app, metrics_token, dev_mode=settings.dev_mode)
    app.add_middleware(DrainMiddleware, drain=drain)  # outermost: it answers /readyz itself while draining
    app.state.settings = settings

    @app.exception_handler(RedisError)
    async def _redis_down(_: Request, exc: RedisError) -> Response:
        err = state_store_error(exc)
        log.warning("redis full" if err.code == "state_store_full" else "redis unavailable", extra={"error": str(exc)})
        return error_response(err)

    app.include_router(openai_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(batch_routes.router)
    app.include_router(usage_routes.router)
    return app
