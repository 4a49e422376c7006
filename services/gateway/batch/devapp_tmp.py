"""DEV ONLY (outside the repo): the gateway as it will be once the lead applies the app.py/settings.py lines."""

from contextlib import asynccontextmanager

from pydantic import Field

from llmops_common.body_limit import BodySizeLimitMiddleware
from services.gateway import app as gw_app
from services.gateway.batch import BatchWorker, PathBodyLimitMiddleware
from services.gateway.batch.setup import build_batch
from services.gateway.routes import batch as batch_routes
from services.gateway.settings import GatewaySettings


class Settings(GatewaySettings):
    batch_max_file_bytes: int = Field(20 * 1_048_576, ge=1024)
    batch_max_lines: int = Field(10_000, ge=1)
    batch_concurrency: int = Field(4, ge=1)
    batch_poll_s: float = Field(1.0, gt=0)
    batch_lease_s: float = Field(30.0, ge=1)
    batch_max_retries: int = Field(20, ge=0)
    batch_retry_max_s: float = Field(60.0, gt=0)


def create_app(settings=None):
    settings = settings or Settings()
    app = gw_app.create_app(settings)
    lines = BatchWorker.lines_counter(app.state._registry) if hasattr(app.state, "_registry") else None
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with inner(a):
            a.state.batch, worker = build_batch(settings, a.state.redis, a.state.proxy, lines)
            await worker.start()
            try:
                yield
            finally:
                await worker.stop()

    app.router.lifespan_context = lifespan
    app.user_middleware = [
        m
        if m.cls is not BodySizeLimitMiddleware
        else type(m)(
            PathBodyLimitMiddleware,
            max_bytes=settings.max_body_bytes,
            upload_path="/v1/files",
            upload_max_bytes=settings.batch_max_file_bytes,
        )
        for m in app.user_middleware
    ]
    app.include_router(batch_routes.router)
    return app
