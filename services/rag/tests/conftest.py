"""Fixtures: one embedder for the session, a FAKE gateway, and the real RAG app served on a free port."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis
import yaml

from services.rag.app import create_app
from services.rag.embedder import Embedder
from services.rag.settings import RagSettings
from services.rag.tests.fake_gateway import FakeGatewayState, build_fake_gateway, serve_in_thread
from tests.support.servers import uvicorn_service

REDIS_URL = os.environ.get("LLMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 model (loaded once: ~6 s)."""
    return Embedder(batch_size=32, threads=1)


@pytest.fixture(scope="session")
def fake_gateway() -> Iterator[tuple[str, FakeGatewayState]]:
    """The FAKE gateway (URL, state)."""
    state = FakeGatewayState()
    with serve_in_thread(build_fake_gateway(state)) as url:
        yield url, state


@pytest.fixture(autouse=True)
def _reset_fake(fake_gateway: tuple[str, FakeGatewayState]) -> None:
    state = fake_gateway[1]
    state.mode, state.upstream, state.admit_mode = "ok", None, "ok"
    state.admit_calls.clear()
    state.admit_tokens.clear()
    state.admit_refuse_kinds.clear()
    state.chat_calls.clear()
    state.chat_keys.clear()


SERVICE_TOKEN = "rag-test-service-token"  # RAG's internal routes (/v1/prompts/...) take it; user routes a key


def rag_settings(data_dir: Path, gateway_url: str, **overrides: object) -> RagSettings:
    """Settings of a test instance (own data dir; no MLflow, registry or guardrails)."""
    values: dict[str, object] = {
        "data_dir": str(data_dir),
        "gateway_url": gateway_url,
        "me_cache_ttl_s": 0,
        "log_json": False,
        "log_level": "WARNING",
        "qdrant_url": None,
        "service_token": SERVICE_TOKEN,
    }
    return RagSettings(**(values | overrides))


@pytest.fixture(scope="session")
def rag_url(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, fake_gateway: tuple[str, FakeGatewayState]
) -> Iterator[str]:
    """The real RAG service (Qdrant local mode on disk) behind uvicorn on a free port."""
    app = create_app(rag_settings(tmp_path_factory.mktemp("rag"), fake_gateway[0]), embedder=embedder)
    with serve_in_thread(app) as url:
        yield url


def client_for(url: str, key: str | None) -> httpx.Client:
    """An HTTP client that sends `key` as the bearer token."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=120)


@pytest.fixture
def team_a(rag_url: str) -> Iterator[httpx.Client]:
    """A client of team-a."""
    with client_for(rag_url, "key-team-a") as client:
        yield client


@pytest.fixture
def team_b(rag_url: str) -> Iterator[httpx.Client]:
    """A client of team-b."""
    with client_for(rag_url, "key-team-b") as client:
        yield client


@contextmanager
def real_gateway(folder: Path, model: dict, admin_key: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """The real gateway in a subprocess (its own event loop and clean shutdown) with one model route, on the shared
    Redis under a prefix of its own, which is deleted afterwards; yields its URL."""
    prefix = f"test:rag-gw:{secrets.token_hex(4)}"
    routes = folder / "routes.yaml"
    routes.write_text(yaml.safe_dump({"models": [model]}))
    gateway_env = {
        "GATEWAY_ADMIN_KEY": admin_key,
        "GATEWAY_REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": prefix,
        "GATEWAY_ROUTES_FILE": str(routes),
        "GATEWAY_EVENTS_ENABLED": "false",
        **(env or {}),
    }
    try:
        with uvicorn_service("services.gateway.app:create_app", gateway_env, log_path=folder / "gateway.log") as url:
            yield url
    finally:
        cleanup = redis.Redis.from_url(REDIS_URL)
        for key in cleanup.scan_iter(match=f"{prefix}:*", count=1000):
            cleanup.delete(key)
        cleanup.close()
