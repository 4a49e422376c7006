"""App factory of the guardrails service: `uvicorn services.guardrails.app:create_app --factory --port 8005`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from llmops_common.service_auth import install_service_auth, require_tokens
from services.guardrails.checker import Checker
from services.guardrails.detectors.loader import load_detectors
from services.guardrails.metrics import GuardrailsMetrics
from services.guardrails.policies import PolicySet
from services.guardrails.routes import router
from services.guardrails.settings import GuardrailsSettings
from services.guardrails.verdict_cache import VerdictCache

VERSION = "0.1.0"


def create_app(settings: GuardrailsSettings | None = None) -> FastAPI:
    """Build the app; the policy file is validated now, the models load in the lifespan."""
    settings = settings or GuardrailsSettings()
    if not settings.access_log:
        # uvicorn has configured its loggers before it calls this factory, so the level set here holds.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # No token outside dev mode is a start failure: guardrails shows policies and must not be an open oracle.
    tokens = require_tokens(
        settings.service_tokens(), service="guardrails", setting="GUARDRAILS_SERVICE_TOKEN", dev_mode=settings.dev_mode
    )
    registry = CollectorRegistry()
    metrics = GuardrailsMetrics(registry)
    policies = PolicySet.load(settings.policy_file)  # a broken file fails the start, not a request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache = VerdictCache(settings.verdict_cache_size, settings.verdict_cache_ttl_s)
        app.state.checker = Checker(load_detectors(settings), metrics, cache)
        metrics.models_loaded.set(1)
        yield

    async def readiness() -> dict[str, bool]:
        return {"detectors_loaded": getattr(app.state, "checker", None) is not None, "policies_loaded": True}

    app = build_service_app(
        name="guardrails",
        version=VERSION,
        description="Input, content and output checks: injection and jailbreak (direct and indirect), PII (structured "
        "and names/places/organisations) and secrets, topics and deny-lists, JSON schema, groundedness; per-team "
        "policies with a fail mode. Every route under /v1 needs the service token (Authorization: Bearer).",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_service_auth(app, tokens, service="guardrails")  # outermost: refuses before reading any body
    app.state.settings = settings
    app.state.policies = policies
    app.state.metrics = metrics
    app.include_router(router)
    return app
