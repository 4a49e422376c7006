"""App factory of the feedback service: `uvicorn services.feedback.app:create_app --factory --port 8004`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.responses import Response

from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from llmops_common.errors import APIError, error_response
from llmops_common.identity import GatewayIdentity
from llmops_common.registry_client import AsyncRegistryClient
from services.feedback.auth import Authenticator
from services.feedback.consumer import StreamConsumer
from services.feedback.datasets import DatasetExporter, DatasetRegistrar
from services.feedback.drift import Embed, Thresholds
from services.feedback.drift_monitor import DriftMonitor
from services.feedback.events import TraceEvent
from services.feedback.metrics import FeedbackMetrics
from services.feedback.routes import router
from services.feedback.rules import LabelRules
from services.feedback.service import FeedbackService
from services.feedback.settings import FeedbackSettings
from services.feedback.sinks import MlflowSink, RegistryRegistrar
from services.feedback.store.store import StorageFull, Store, StoreUnavailable

VERSION = "0.1.0"
log = logging.getLogger("llmops.feedback")


def create_app(
    settings: FeedbackSettings | None = None, *, identity: Authenticator | None = None, embed: Embed | None = None
) -> FastAPI:
    """Build the app; the store, the stream consumer and the drift timer start in the lifespan.

    `identity` replaces the gateway identity client (tests); by default keys are resolved by the gateway's /v1/me.
    """
    settings = settings or FeedbackSettings()
    registry = CollectorRegistry()
    metrics = FeedbackMetrics(registry)
    store = Store.from_settings(settings.database_url, settings.resolved_path(settings.sqlite_path))
    thresholds = Thresholds(
        settings.drift_embedding_threshold,
        settings.drift_ks_threshold,
        settings.drift_rate_threshold,
        settings.drift_rating_threshold,
    )
    drift = DriftMonitor(
        store,
        metrics,
        thresholds,
        reference_s=settings.drift_reference_s,
        current_s=settings.drift_current_s,
        max_samples=settings.drift_max_samples,
        min_samples=settings.drift_min_samples,
        embedding_model_path=settings.embedding_model_path,
        embed=embed,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        redis = Redis.from_url(settings.redis_url)
        sink = (
            MlflowSink(settings.mlflow_tracking_uri, settings.mlflow_experiment)
            if settings.mlflow_tracking_uri
            else None
        )
        registrar: DatasetRegistrar | None = sink
        if settings.registry_url:
            registrar = RegistryRegistrar(
                AsyncRegistryClient(settings.registry_url, settings.registry_token, timeout_s=30)
            )
        gateway_identity = None
        if identity is None:
            gateway_identity = GatewayIdentity(
                settings.gateway_url,
                redis_url=settings.gateway_redis_url or settings.redis_url,
                prefix=settings.gateway_redis_prefix,
                ttl_s=settings.auth_cache_s,
            )
            await gateway_identity.start()
        app.state.identity = identity or gateway_identity
        app.state.redis = redis
        app.state.service = FeedbackService(store, metrics, lease_s=settings.label_lease_s, sink=sink)
        app.state.exporter = DatasetExporter(store, settings.resolved_path(settings.export_dir), registrar)
        tasks: list[asyncio.Task[None]] = []
        consumer = None
        if settings.consumer_enabled:

            async def on_stored(events: list[TraceEvent]) -> None:
                if sink is not None:
                    await sink.events(events)

            consumer = StreamConsumer(
                redis,
                store,
                metrics,
                LabelRules(settings.label_low_retrieval_score, settings.label_low_logprob),
                stream_key=settings.stream_key,
                group=settings.consumer_group,
                name=settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}",
                batch_size=settings.batch_size,
                block_ms=settings.block_ms,
                claim_idle_ms=settings.claim_idle_ms,
                on_stored=on_stored,
            )
            tasks.append(asyncio.create_task(consumer.run(), name="feedback-consumer"))
        app.state.consumer = consumer
        if sink is not None:
            sink.start()
        tasks.append(asyncio.create_task(app.state.service.refresh_gauges_forever(15.0), name="feedback-gauges"))
        if settings.drift_enabled:
            tasks.append(asyncio.create_task(drift.run_forever(settings.drift_interval_s), name="feedback-drift"))
        log.info("feedback service started", extra={"store": store.description, "stream": settings.stream_key})
        try:
            yield
        finally:
            if consumer is not None:
                consumer.stop()
            for task in tasks:
                if task.get_name() != "feedback-consumer":
                    task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            if sink is not None:
                await sink.stop()
            if gateway_identity is not None:
                await gateway_identity.aclose()
            if isinstance(registrar, RegistryRegistrar):
                await registrar.aclose()
            await redis.aclose()
            await store.close()

    async def readiness() -> dict[str, bool]:
        checks = {"store": await store.ping()}
        try:
            checks["redis"] = bool(await app.state.redis.ping())
        except Exception:  # any failure to reach Redis means not ready
            checks["redis"] = False
        consumer = getattr(app.state, "consumer", None)
        if settings.consumer_enabled:
            checks["consumer"] = bool(consumer and consumer.running)
        return checks

    app = build_service_app(
        name="feedback",
        version=VERSION,
        description="Trace events from the gateway, user feedback, drift, a labeling queue and dataset export.",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)

    async def store_unavailable(_: Request, exc: Exception) -> Response:
        return error_response(APIError(503, "store_unavailable", f"the feedback store is unavailable: {exc}"))

    async def storage_full(_: Request, exc: Exception) -> Response:
        # 507 Insufficient Storage: not the client's fault, and retrying before space is freed does not help.
        return error_response(APIError(507, "storage_full", f"the feedback service's disk is full: {exc}"))

    app.add_exception_handler(StoreUnavailable, store_unavailable)
    app.add_exception_handler(StorageFull, storage_full)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.drift = drift
    app.include_router(router)
    return app
