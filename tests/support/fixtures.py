"""Shared fixtures: the real inference service and gateways in subprocesses, a FAKE upstream for faults."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.support.fake_upstream import FakeUpstream, fake_upstream_in_thread
from tests.support.servers import free_port, uvicorn_service

REDIS_URL = os.environ.get("LLMOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL = "smollm2-135m-instruct"
ADMIN = "test-admin-key"


@pytest.fixture(scope="session")
def inference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real inference service with the real SmolLM2 model (llama.cpp on CPU)."""
    log = tmp_path_factory.mktemp("logs") / "inference.log"
    env = {
        "INFERENCE_MAX_RUNNING": "2",
        "INFERENCE_MAX_QUEUED": "8",
        "INFERENCE_PARALLEL_SLOTS": "2",
        # Open, so every gateway test can route to it as is; the token is tested in services/inference/tests.
        "INFERENCE_DEV_MODE": "true",
    }
    with uvicorn_service("services.inference.app:create_app", env, log_path=log) as url:
        yield url


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """A FAKE OpenAI upstream (fault injection only)."""
    with fake_upstream_in_thread() as fake:
        yield fake


class Gateway:
    """A running gateway plus an admin client to mint keys."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
        self.http = httpx.Client(timeout=120)
        self.events_stream = ""  # shared by the openai clients the tests create

    def openai(self, key: str) -> openai.OpenAI:
        """An official client for this gateway (no retries, so a test sees each error)."""
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, http_client=self.http)

    def close(self) -> None:
        self.admin.close()
        self.http.close()

    def team(self, team: str, **limits: object) -> dict:
        response = self.admin.post("/admin/teams", json={"team": team, **limits})
        response.raise_for_status()
        return response.json()

    def key(self, team: str | None = None, **fields: object) -> str:
        team = team or f"team-{secrets.token_hex(3)}"
        self.team(team)
        response = self.admin.post("/admin/keys", json={"team": team, **fields})
        response.raise_for_status()
        return str(response.json()["key"])


@pytest.fixture(scope="session")
def start_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[list[dict]], Gateway]]:
    """Start a gateway subprocess with the given model routes (list of routes-file model entries)."""
    stack = ExitStack()
    folder = tmp_path_factory.mktemp("gateways")

    def start(models: list[dict], defaults: dict | None = None, env: dict[str, str] | None = None) -> Gateway:
        name = secrets.token_hex(3)
        routes = Path(folder) / f"routes-{name}.yaml"
        routes.write_text(yaml.safe_dump({"defaults": defaults or {}, "models": models}))
        env = {
            "GATEWAY_ADMIN_KEY": ADMIN,
            "GATEWAY_REDIS_URL": REDIS_URL,
            "GATEWAY_REDIS_PREFIX": f"test:gwi:{name}",
            "GATEWAY_ROUTES_FILE": str(routes),
            "GATEWAY_EVENTS_STREAM": f"test:events:{name}",
            **(env or {}),
        }
        url = stack.enter_context(
            uvicorn_service("services.gateway.app:create_app", env, log_path=Path(folder) / f"gw-{name}.log")
        )
        gateway = Gateway(url)
        gateway.events_stream = f"test:events:{name}"
        stack.callback(gateway.close)
        return gateway

    yield start
    stack.close()


@pytest.fixture(scope="session")
def gateway(start_gateway: Callable[..., Gateway], inference_url: str) -> Gateway:
    """A gateway routing the SmolLM2 model to the real inference service."""
    return start_gateway(
        [
            {
                "name": MODEL,
                "price": {"input_per_1m": 0.10, "output_per_1m": 0.20},
                "deployments": [{"name": "local", "url": inference_url + "/v1", "model": MODEL}],
            }
        ]
    )


def closed_port_url() -> str:
    """A URL where nothing listens (a deployment that is down)."""
    return f"http://127.0.0.1:{free_port()}/v1"
