"""Gateway test fixtures: a real Redis with a unique key prefix per test (cleaned afterwards)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.gateway.keys import KeyStore, TeamRecord
from services.gateway.limits import Limiter

REDIS_URL = os.environ.get("LLMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    value = f"test:gw:{secrets.token_hex(4)}"
    yield value
    async for key in redis.scan_iter(match=f"{value}:*", count=1000):
        await redis.delete(key)


@pytest.fixture
async def store(redis: Redis, prefix: str) -> KeyStore:
    keys = KeyStore(redis, prefix)
    await keys.upsert_team(TeamRecord("alpha"))
    return keys


@pytest.fixture
def limiter(redis: Redis, prefix: str) -> Limiter:
    return Limiter(redis, prefix)
