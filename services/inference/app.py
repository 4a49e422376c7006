"""App factory of the inference service: `uvicorn services.inference.app:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from prometheus_client import CollectorRegistry

from services.inference.admission import AdmissionController
from services.inference.engines.base import Engine
from services.inference.engines.llamacpp import LlamaCppEngine, packaged_smollm2_path
from services.inference.engines.openai_upstream import OpenAIUpstreamEngine
from services.inference.metrics import InferenceMetrics
from services.inference.routes import router
from services.inference.serving import ServingService
from services.inference.settings import InferenceSettings

VERSION = "0.1.0"


def build_engine(settings: InferenceSettings) -> Engine:
    """Pick the engine the settings ask for."""
    if settings.engine == "openai":
        if not settings.upstream_url:
            raise ValueError("INFERENCE_UPSTREAM_URL is required when INFERENCE_ENGINE=openai")
        return OpenAIUpstreamEngine(
            settings.upstream_url,
            upstream_model=settings.upstream_model or settings.served_model_name,
            api_key=settings.upstream_api_key,
            context_length=settings.context_length,
            timeout_s=settings.upstream_timeout_s,
        )
    model_path = Path(settings.model_path) if settings.model_path else packaged_smollm2_path()
    return LlamaCppEngine(
        model_path,
        context_length=settings.context_length,
        parallel_slots=settings.parallel_slots,
        threads=settings.threads,
        http_port=settings.engine_http_port,
    )


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    """Build the app; the model loads in the lifespan and /readyz turns 200 when it has."""
    settings = settings or InferenceSettings()
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = build_engine(settings)
        await engine.start()
        app.state.engine = engine
        app.state.serving = ServingService(
            engine,
            AdmissionController(settings.max_running, settings.max_queued, settings.queue_timeout_s),
            metrics,
            served_model_name=settings.served_model_name,
            model_version=settings.model_version,
            default_max_tokens=settings.default_max_tokens,
        )
        metrics.model_ready.labels(settings.served_model_name, settings.model_version).set(
            1 if engine.is_ready() else 0
        )
        try:
            yield
        finally:
            await engine.stop()

    async def readiness() -> dict[str, bool]:
        engine: Engine | None = getattr(app.state, "engine", None)
        if isinstance(engine, OpenAIUpstreamEngine) and not engine.is_ready():
            await engine.refresh_ready()
        return {"model_loaded": bool(engine and engine.is_ready())}

    app = build_service_app(
        name="inference",
        version=VERSION,
        description="OpenAI-compatible serving of one registered model through a pluggable engine.",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.settings = settings
    app.include_router(router)
    return app
