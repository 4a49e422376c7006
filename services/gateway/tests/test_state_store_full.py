"""Issue 12, row 10: when Redis is full (its maxmemory reached, policy noeviction) the gateway answers a clear
507 state_store_full in the one envelope, with Retry-After, on every path that writes: chat admission, the usage
admission RAG calls, batch uploads and the admin API. Not a 500, and not "cannot reach Redis".

Runs against a private redis-server on a free port whose cap the test lowers; the shared Redis is not touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.fault_redis import private_redis

ADMIN = {"authorization": "Bearer oom-admin"}


def fill(url: str) -> None:
    """Ballast, then a cap below what Redis holds: the state a full production Redis is in (every write that may
    grow memory is refused with OOM, reads still answer)."""
    client = redis.Redis.from_url(url)
    try:
        for i in range(16):
            client.set(f"ballast:{i}", b"x" * 65536)
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 256 * 1024)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("one-more", b"x")
    finally:
        client.close()


@pytest.fixture
def full(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    routes = tmp_path / "routes.yaml"
    deployment = {"name": "nowhere", "url": "http://127.0.0.1:9/v1"}  # never reached: admission fails first
    routes.write_text(yaml.safe_dump({"models": [{"name": "m", "deployments": [deployment]}]}))
    with private_redis("--maxmemory-policy", "noeviction") as (url, _):
        settings = GatewaySettings(
            admin_key="oom-admin", redis_url=url, routes_file=routes, metrics_token="oom-metrics", events_enabled=False
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            assert client.post("/admin/teams", json={"team": "t"}, headers=ADMIN).status_code == 200
            created = client.post("/admin/keys", json={"team": "t"}, headers=ADMIN)
            assert created.status_code == 201, created.text
            fill(url)
            yield client, created.json()["key"]


def assert_full(resp: Any) -> None:
    assert resp.status_code == 507, resp.text
    error = resp.json()["error"]
    assert error["code"] == "state_store_full"
    assert "maxmemory" in error["message"]
    assert int(resp.headers["retry-after"]) > 0


def test_a_full_redis_is_a_507_state_store_full_on_every_write_path(full: tuple[TestClient, str]) -> None:
    client, key = full
    auth = {"authorization": f"Bearer {key}"}
    chat = client.post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, headers=auth
    )
    assert_full(chat)
    assert_full(client.post("/v1/usage/admit", json={"kind": "rag.query"}, headers=auth))
    line = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}\n'
    upload = client.post(
        "/v1/files", files={"file": ("in.jsonl", line, "application/jsonl")}, data={"purpose": "batch"}, headers=auth
    )
    assert_full(upload)
    assert_full(client.post("/admin/teams", json={"team": "u"}, headers=ADMIN))
    metrics = client.get("/metrics", headers={"authorization": "Bearer oom-metrics"}).text
    assert 'llmops_gateway_requests_total{model="m",status="507",team="t"} 1.0' in metrics
