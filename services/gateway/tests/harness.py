"""An in-process gateway (real Redis, unique prefix) in front of a FAKE engine and a FAKE guardrails service,
for request-path tests that need to see what was forwarded, checked, charged and emitted."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.fake_engine import FakeEngine, fake_engine_in_thread
from tests.support.fake_guardrails import FakeGuardrails, fake_guardrails_in_thread
from tests.support.trace_events import wait_for_event

REDIS_URL = os.environ.get("LLMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "harness-admin"
MODEL = "m"
PRICE = {"input_per_1m": 1000.0, "output_per_1m": 1000.0}  # 1 micro-USD per token: spend shows every token


@dataclass
class Harness:
    """The gateway client, its fakes, and helpers to read what it left in Redis."""

    client: TestClient
    engine: FakeEngine
    guard: FakeGuardrails
    prefix: str
    stream: str

    def key(self, team: str = "t1", **fields: Any) -> tuple[str, str]:
        """A new key of `team`: (plaintext, key_id)."""
        admin = {"authorization": f"Bearer {ADMIN}"}
        assert self.client.post("/admin/teams", json={"team": team}, headers=admin).status_code == 200
        created = self.client.post("/admin/keys", json={"team": team, **fields}, headers=admin)
        assert created.status_code == 201, created.text
        return created.json()["key"], created.json()["key_id"]

    def chat(self, key: str, **body: Any) -> Any:
        """POST /v1/chat/completions with the model and one user message unless given."""
        payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **body}
        return self.client.post("/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"})

    def spend(self, key_id: str) -> float:
        """The key's spend in USD (reservations in flight included)."""
        out = self.client.get(f"/admin/keys/{key_id}", headers={"authorization": f"Bearer {ADMIN}"})
        return float(out.json()["spend_usd"])

    def settled_spend(self, key_id: str, expected: float | None = None, timeout_s: float = 5.0) -> float:
        """The spend once background settlement ran (polls until `expected`, or a stable value)."""
        deadline = time.monotonic() + timeout_s
        value = self.spend(key_id)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            latest = self.spend(key_id)
            if (expected is not None and abs(latest - expected) < 1e-12) or (expected is None and latest == value):
                return latest
            value = latest
        return value

    def event(self, request_id: str | None = None, timeout_s: float = 5.0, **match: Any) -> dict[str, Any]:
        """The trace event of a request, or the first whose fields equal `match` (written in the background)."""
        if request_id is not None:
            match["request_id"] = request_id
        return wait_for_event(REDIS_URL, self.stream, timeout_s, **match)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the gateway's /metrics (0 when absent)."""
        text = self.client.get("/metrics", headers={"authorization": "Bearer harness-metrics"}).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@contextmanager
def harness(tmp_path: Path, route: dict[str, Any] | None = None, **settings: Any) -> Iterator[Harness]:
    """Start everything; `route` adds keys to the model's routes-file entry, `settings` overrides settings."""
    name = secrets.token_hex(4)
    prefix, stream = f"test:gwh:{name}", f"test:gwh-events:{name}"
    with ExitStack() as stack:
        engine = stack.enter_context(fake_engine_in_thread())
        guard = stack.enter_context(fake_guardrails_in_thread())
        routes = tmp_path / f"routes-{name}.yaml"
        model = {
            "name": MODEL,
            "price": PRICE,
            "deployments": [{"name": "fake", "url": engine.url, "api_key_env": "GATEWAY_INFERENCE_TOKEN"}],
            **(route or {}),
        }
        routes.write_text(yaml.safe_dump({"models": [model]}))
        config = GatewaySettings(
            admin_key=ADMIN,
            redis_url=REDIS_URL,
            redis_prefix=prefix,
            routes_file=routes,
            events_stream=stream,
            guardrails_url=guard.url,
            guardrails_token="harness-guardrails",
            guardrails_timeout_ms=5000,
            metrics_token="harness-metrics",
            **settings,
        )
        try:
            with TestClient(create_app(config), raise_server_exceptions=False) as client:
                yield Harness(client, engine, guard, prefix, stream)
        finally:
            cleanup = redis.Redis.from_url(REDIS_URL)
            for key in cleanup.scan_iter(match=f"{prefix}:*", count=1000):
                cleanup.delete(key)
            cleanup.delete(stream)
            cleanup.close()
