"""The common skeleton of a service app: errors, request ids, logging, health and metrics."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from llmops_common.errors import install_error_handlers
from llmops_common.health import ReadinessCheck, health_router
from llmops_common.log_setup import configure_logging
from llmops_common.openapi_errors import install_error_documentation
from llmops_common.request_id import RequestIdMiddleware
from llmops_common.service_auth import SecurityHeadersMiddleware
from llmops_common.settings import ServiceSettings
from llmops_common.telemetry import install_tracing

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_service_app(
    *,
    name: str,
    version: str,
    description: str,
    settings: ServiceSettings,
    registry: CollectorRegistry,
    readiness: ReadinessCheck,
    lifespan: Lifespan | None = None,
) -> FastAPI:
    """Create a FastAPI app with the platform's shared plumbing installed."""
    configure_logging(name, settings.log_level, settings.log_json)
    app = FastAPI(
        title=f"llmops {name}",
        version=version,
        description=description,
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    install_tracing(app, name)  # outermost: the span covers the whole request
    install_error_handlers(app)
    install_error_documentation(app)  # the document says what those handlers answer
    app.include_router(health_router(registry, readiness))
    return app
