"""`/healthz` (process alive), `/readyz` (dependencies ready) and `/metrics` for every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from llmops_common.responses import JSONBytesResponse

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def health_router(registry: CollectorRegistry, readiness: ReadinessCheck) -> APIRouter:
    """Build the three operational routes; `readiness` returns a name -> ok map."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONBytesResponse:
        """Readiness: every dependency this service needs is usable."""
        checks = await readiness()
        ready = all(checks.values())
        return JSONBytesResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus exposition of this service's registry."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
