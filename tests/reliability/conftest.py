"""Fixtures of the fault tests: a gateway (real process) in front of a FAKE upstream and a private Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from tests.support.fixtures import ADMIN
from tests.support.servers import uvicorn_service

FAKE_MODEL = "fake-model"
# The FAKE upstream reports 10 prompt + 2 completion tokens: 10 * 1.0 + 2 * 2.0 USD per 1M = 14e-6 USD a request.
PRICE = {"input_per_1m": 1.0, "output_per_1m": 2.0}
COST_USD = 14e-6


class GatewayUnderTest:
    """A gateway process plus an admin client."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)

    def key(self, team: str, **team_fields: object) -> str:
        self.admin.post("/admin/teams", json={"team": team, **team_fields}).raise_for_status()
        response = self.admin.post("/admin/keys", json={"team": team})
        response.raise_for_status()
        return str(response.json()["key"])

    def spend_usd(self, team: str) -> float:
        response = self.admin.get(f"/admin/teams/{team}")
        response.raise_for_status()
        return float(response.json()["spend_usd"])

    def chat(self, key: str, content: str = "hi", timeout: float = 30, **extra: object) -> httpx.Response:
        body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": content}], **extra}
        return httpx.post(
            self.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=timeout
        )

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text


@contextmanager
def gateway_process(
    folder: Path,
    redis_url: str,
    deployments: list[dict],
    env: dict[str, str] | None = None,
    defaults: dict | None = None,
) -> Iterator[GatewayUnderTest]:
    """A gateway subprocess routing FAKE_MODEL to `deployments`, stopped on exit."""
    name = secrets.token_hex(3)
    routes = folder / f"routes-{name}.yaml"
    model = {"name": FAKE_MODEL, "price": PRICE, "deployments": deployments}
    routes.write_text(yaml.safe_dump({"defaults": defaults or {}, "models": [model]}))
    full_env = {
        "GATEWAY_ADMIN_KEY": ADMIN,
        "GATEWAY_DEV_MODE": "true",  # /metrics open to the test
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_REDIS_PREFIX": f"test:rel:{name}",
        "GATEWAY_ROUTES_FILE": str(routes),
        "GATEWAY_EVENTS_STREAM": f"test:rel:events:{name}",
        **(env or {}),
    }
    with uvicorn_service("services.gateway.app:create_app", full_env, log_path=folder / f"gw-{name}.log") as url:
        gateway = GatewayUnderTest(url)
        try:
            yield gateway
        finally:
            gateway.admin.close()
