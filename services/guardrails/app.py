"""App factory of the guardrails service: `uvicorn services.guardrails.app:create_app --factory --port 8005`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from services.guardrails.checker import Checker
from services.guardrails.detectors.loader import load_detectors
from services.guardrails.metrics import GuardrailsMetrics
from services.guardrails.policies import PolicySet
from services.guardrails.routes import router
from services.guardrails.settings import GuardrailsSettings

VERSION = "0.1.0"


def create_app(settings: GuardrailsSettings | None = None) -> FastAPI:
    """Build the app; the policy file is validated now, the models load in the lifespan."""
    settings = settings or GuardrailsSettings()
    registry = CollectorRegistry()
    metrics = GuardrailsMetrics(registry)
    policies = PolicySet.load(settings.policy_file)  # a broken file fails the start, not a request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.checker = Checker(load_detectors(settings), metrics)
        metrics.models_loaded.set(1)
        yield

    async def readiness() -> dict[str, bool]:
        return {"detectors_loaded": getattr(app.state, "checker", None) is not None, "policies_loaded": True}

    app = build_service_app(
        name="guardrails",
        version=VERSION,
        description="Input and output checks: injection and jailbreak, PII and secrets, topics and deny-lists, "
        "JSON schema, groundedness; per-team policies with a fail mode.",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.settings = settings
    app.state.policies = policies
    app.state.metrics = metrics
    app.include_router(router)
    return app
