"""App factory of the inference service: `uvicorn services.inference.app:create_app --factory`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from llmops_common.registry_client import AsyncRegistryClient, RegistryError
from llmops_common.service_auth import install_service_auth, require_tokens
from services.inference.admission import AdmissionController
from services.inference.deployments import DeploymentManager
from services.inference.loader import load_deployment
from services.inference.metrics import InferenceMetrics
from services.inference.registry_source import RegistrySource, VersionSpec
from services.inference.routes import router
from services.inference.serving import CostModel, ServingService
from services.inference.settings import InferenceSettings
from services.inference.watcher import AliasWatcher

VERSION = "0.1.0"
log = logging.getLogger("inference.app")


async def _resolve_quietly(source: RegistrySource, alias: str) -> VersionSpec | None:
    try:
        return await source.resolve(alias)
    except RegistryError:
        return None


def create_app(
    settings: InferenceSettings | None = None, registry_client: AsyncRegistryClient | None = None
) -> FastAPI:
    """Build the app; the model loads in the lifespan and /readyz turns 200 when it has.

    `registry_client` (tests pass a fake) defaults to one for INFERENCE_REGISTRY_URL when that is set."""
    settings = settings or InferenceSettings()
    # Checked before anything loads: without a token (outside dev mode) the service refuses to start.
    tokens = require_tokens(
        settings.service_tokens(), service="inference", setting="INFERENCE_SERVICE_TOKEN", dev_mode=settings.dev_mode
    )
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        source = None
        spec = None
        client = registry_client or (AsyncRegistryClient(settings.registry_url) if settings.registry_url else None)
        if client is not None:
            source = RegistrySource(client, settings.registry_model or settings.served_model_name)
            try:
                spec = await source.resolve(settings.registry_alias)
            except RegistryError as exc:
                log.warning("registry unreachable at start; serving the configured model", extra={"error": str(exc)})
        manager = DeploymentManager(
            await load_deployment(settings, spec, settings.registry_alias), settings.drain_timeout_s
        )
        serving = ServingService(
            manager,
            AdmissionController(
                settings.max_running,
                settings.max_queued,
                settings.queue_timeout_s,
                max_tokens=settings.max_running_tokens,
                wait_factor=settings.queue_wait_factor,
                min_wait_s=settings.queue_wait_min_s,
            ),
            metrics,
            served_model_name=settings.served_model_name,
            default_max_tokens=settings.default_max_tokens,
            cost=CostModel(settings.prompt_token_weight, settings.prompt_chars_per_token),
        )
        app.state.serving = serving
        app.state.engine = manager.production.engine
        metrics.model_ready.labels(settings.served_model_name, manager.production.version).set(1)
        if source is not None:
            watcher = AliasWatcher(settings, manager, metrics)
            if settings.canary_alias:
                try:
                    await watcher.on_change(
                        settings.canary_alias, await _resolve_quietly(source, settings.canary_alias)
                    )
                except Exception:  # a broken challenger must not keep production from serving; the poll retries
                    log.exception("loading the canary failed; serving production only")
            aliases = [settings.registry_alias] + ([settings.canary_alias] if settings.canary_alias else [])
            source.watch(aliases, settings.registry_poll_s, watcher.on_change, watcher.current)
        try:
            yield
        finally:
            if source is not None:
                await source.stop()
            await manager.stop()

    async def readiness() -> dict[str, bool]:
        serving: ServingService | None = getattr(app.state, "serving", None)
        engine = serving.manager.production.engine if serving else None
        if engine is not None and not engine.is_ready():
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
    # Outermost: a caller without the service token is refused before its body is read.
    install_service_auth(app, tokens, service="inference")
    app.state.settings = settings
    app.include_router(router)
    return app
