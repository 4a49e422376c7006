"""App factory of the registry service: `uvicorn services.registry.app:create_app --factory --port 8003`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from mlflow.exceptions import MlflowException
from prometheus_client import CollectorRegistry

from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from llmops_common.errors import APIError, error_response
from services.registry.auth import PrincipalStore
from services.registry.context import build_context
from services.registry.datasets import DatasetService
from services.registry.drift import DriftDetector
from services.registry.errors import RegistryError
from services.registry.metrics import RegistryMetrics
from services.registry.models import ModelService
from services.registry.promotions import PromotionService
from services.registry.prompts import PromptService
from services.registry.routes import datasets, governance, models, prompts
from services.registry.routes.deps import Services
from services.registry.settings import RegistrySettings
from services.registry.store import run_sync

VERSION = "0.1.0"
log = logging.getLogger("llmops.registry")

# MLflow's own refusals that reach us mean the input was bad (we validate first, so this is rare).
_MLFLOW_STATUS = {
    "INVALID_PARAMETER_VALUE": (400, "invalid_request"),
    "RESOURCE_ALREADY_EXISTS": (409, "conflict"),
    "RESOURCE_DOES_NOT_EXIST": (404, "not_found"),
}


def build_services(settings: RegistrySettings, metrics: RegistryMetrics) -> Services:
    """Wire the store, MLflow client and service classes together; installs the bootstrap admin."""
    ctx = build_context(settings, metrics)
    principals = PrincipalStore(ctx.store, ctx.audit, dev_mode=settings.dev_mode)
    principals.ensure_admin(settings.bootstrap_admin_token())
    ds = DatasetService(ctx)
    drift = DriftDetector(ctx)
    model_svc = ModelService(ctx, ds, drift)
    prompt_svc = PromptService(ctx, drift)
    return Services(ctx, principals, model_svc, prompt_svc, ds, PromotionService(ctx, model_svc, prompt_svc))


async def _scan_forever(services: Services, interval_s: float) -> None:
    """Compare all of MLflow with the audit log on a schedule (findings are counted and recorded by the scan)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_sync(services.models.drift.scan)
        except Exception:  # MLflow down or slow: the next round tries again; resolves are still checked
            log.warning("scheduled drift scan failed", exc_info=True)


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """Build the app; the store opens in the lifespan (which refuses to start without an admin token outside
    dev mode) and /readyz checks MLflow and the store."""
    settings = settings or RegistrySettings()
    registry = CollectorRegistry()
    metrics = RegistryMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = await run_sync(build_services, settings, metrics)
        scanner = None
        if settings.drift_scan_interval_s > 0:
            scanner = asyncio.create_task(_scan_forever(app.state.services, settings.drift_scan_interval_s))
        try:
            yield
        finally:
            if scanner is not None:
                scanner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scanner
            app.state.services.ctx.store.close()

    async def readiness() -> dict[str, bool]:
        services: Services | None = getattr(app.state, "services", None)
        if services is None:
            return {"mlflow": False, "store": False}
        return {
            "mlflow": await run_sync(services.ctx.mlflow.ping),
            "store": await run_sync(services.ctx.store.ping),
        }

    app = build_service_app(
        name="registry",
        version=VERSION,
        description="Governance over MLflow: model, prompt and dataset versions, aliases, promotions with "
        "four-eyes approval, and a tamper-evident audit log.",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.settings = settings

    @app.exception_handler(RegistryError)
    async def _registry_error(_: Request, exc: RegistryError) -> Response:
        # A 503 (MLflow or the store not answering) passes once it is back: say when to try again.
        headers = {"retry-after": "5"} if exc.status == 503 else None
        return error_response(APIError(exc.status, exc.code, exc.message, headers=headers, extra=exc.extra))

    @app.exception_handler(MlflowException)
    async def _mlflow_error(_: Request, exc: MlflowException) -> Response:
        status, code = _MLFLOW_STATUS.get(exc.error_code, (502, "mlflow_error"))
        return error_response(APIError(status, code, f"MLflow: {exc.message}"[:2000]))

    for module in (models, prompts, datasets, governance):
        app.include_router(module.router)
    return app
