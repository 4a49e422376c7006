"""Wiring of the batch API from the gateway's settings (called in the app's lifespan)."""

from __future__ import annotations

from prometheus_client import Counter
from redis.asyncio import Redis

from services.gateway.batch.jsonl import FileLimits
from services.gateway.batch.service import BatchService
from services.gateway.batch.store import BatchStore
from services.gateway.batch.worker import BatchWorker, WorkerConfig
from services.gateway.proxy import ProxyService
from services.gateway.settings import GatewaySettings


def build_batch(
    settings: GatewaySettings, redis: Redis, proxy: ProxyService, lines: Counter
) -> tuple[BatchService, BatchWorker]:
    """The API service and the (not yet started) background worker, sharing one store."""
    store = BatchStore(redis, settings.redis_prefix, settings.batch_file_ttl_s)
    limits = FileLimits(
        settings.batch_max_file_bytes, settings.batch_max_lines, settings.max_body_bytes, settings.team_file_bytes_max
    )
    config = WorkerConfig(
        concurrency=settings.batch_concurrency,
        poll_s=settings.batch_poll_s,
        lease_s=settings.batch_lease_s,
        max_retries=settings.batch_max_retries,
        retry_max_s=settings.batch_retry_max_s,
    )
    return BatchService(store, limits, proxy.check_body), BatchWorker(store, proxy, config, lines)
