"""Fixtures: Redis db 3 with a unique stream per test, both store backends, the fake gateway, the embedder."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.asyncio import Redis

from services.feedback.drift import Embed, sentence_embedder
from services.feedback.settings import FeedbackSettings
from services.feedback.tests.helpers import fake_gateway, serve

REDIS_URL = "redis://127.0.0.1:6379/3"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

KEYS = {
    "sk-team-a": {"key_id": "key-a", "team": "team-a", "project": "proj-a", "allowed_models": ["*"]},
    "sk-team-a2": {"key_id": "key-a2", "team": "team-a", "project": "proj-a2", "allowed_models": ["*"]},
    "sk-team-b": {"key_id": "key-b", "team": "team-b", "project": "proj-b", "allowed_models": ["*"]},
}
ADMIN = "admin-test-token"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session (FEEDBACK_TEST_SKIP_POSTGRES=1 skips those tests)."""
    if os.environ.get("FEEDBACK_TEST_SKIP_POSTGRES"):
        pytest.skip("FEEDBACK_TEST_SKIP_POSTGRES is set")
    name = f"feedback_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {PG_ADMIN_URL} (or set FEEDBACK_TEST_SKIP_POSTGRES=1): {exc}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


# The PostgreSQL variant needs a server: an integration test (make test-fast runs the SQLite one).
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs on both backends; a PostgreSQL test gets its own schema (search_path)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    base = request.getfixturevalue("pg_database")
    schema = f"fb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture
def stream_key() -> str:
    """A stream key no other test (or worker) uses."""
    return f"test:feedback:{uuid.uuid4().hex}"


@pytest.fixture
async def redis(stream_key: str) -> AsyncIterator[Redis]:
    """Redis db 3; the test's stream is deleted afterwards."""
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.delete(stream_key)
    await client.aclose()


@pytest.fixture(scope="session")
async def gateway_url() -> AsyncIterator[str]:
    """The fake gateway's base URL (answers /v1/me for KEYS)."""
    async with serve(fake_gateway(KEYS)) as url:
        yield url


@pytest.fixture(scope="session")
def embedder() -> Embed:
    """The real all-MiniLM-L6-v2, loaded once per session."""
    return sentence_embedder(None)


@pytest.fixture
def make_settings(database_url: str, stream_key: str, gateway_url: str, tmp_path: Path) -> Any:
    """Settings for one service instance on this test's stream and store."""

    def build(**overrides: Any) -> FeedbackSettings:
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "stream_key": stream_key,
            "database_url": database_url,
            "gateway_url": gateway_url,
            "admin_token": ADMIN,
            "consumer_name": "test-consumer",
            "block_ms": 50,
            "drift_enabled": False,
            "export_dir": str(tmp_path / "exports"),
            "log_json": False,
        }
        values.update(overrides)
        return FeedbackSettings(**values)

    return build
