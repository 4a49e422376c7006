"""Canary and swaps without a model: the traffic split, which version answers, per-version metrics, and the
watcher's reuse and retirement of loaded versions. A FAKE engine stands in for llama.cpp so every response
says which deployment produced it (the real model and registry are in tests/integration)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.inference import app as app_module
from services.inference import watcher as watcher_module
from services.inference.app import create_app
from services.inference.deployments import DeploymentManager, ModelDeployment
from services.inference.metrics import InferenceMetrics
from services.inference.registry_source import RegistrySource, VersionSpec
from services.inference.settings import InferenceSettings
from services.inference.watcher import AliasWatcher

MODEL = "canary-model"


class FakeEngine:
    """Answers with its own tag, so a test can tell which loaded version produced a response."""

    name = "fake"
    context_length = 2048

    def __init__(self, tag: str, fail_start: bool = False) -> None:
        self.tag = tag
        self.fail_start = fail_start
        self.stopped = False

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"cannot load {self.tag}")

    async def stop(self) -> None:
        self.stopped = True

    def is_ready(self) -> bool:
        return not self.stopped

    async def generate(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"by {self.tag}"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }

    async def stream(self, kind: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"by {self.tag}"}}]}
        yield {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}


def deployment(version: str, registered: bool = True) -> ModelDeployment:
    uri = f"file:///m/{version}.gguf" if registered else None
    return ModelDeployment(FakeEngine(version), version, artifact_uri=uri)


def spec(version: str) -> VersionSpec:
    return VersionSpec(MODEL, version, f"file:///m/{version}.gguf", "llamacpp", 2048)


# ---- the split ----------------------------------------------------------------------------------------------
def test_canary_gets_its_share_of_requests() -> None:
    manager = DeploymentManager(deployment("1"), random_source=random.Random(7).random)
    manager.set_canary(deployment("2"), 10)
    picks = Counter(manager.pick().version for _ in range(10_000))
    assert 900 <= picks["2"] <= 1100, picks  # 10% +- 1 point (the binomial sd is 0.3 points)
    assert picks["1"] + picks["2"] == 10_000


@pytest.mark.parametrize(("percent", "expected"), [(0, "1"), (100, "2")])
def test_zero_and_hundred_percent_are_exact(percent: float, expected: str) -> None:
    # The extremes of the random source included: 0.0 must not reach a 0% canary, 0.99.. must reach a 100% one.
    draws = iter([0.0, 0.999999999, *[random.Random(1).random() for _ in range(2000)]])
    manager = DeploymentManager(deployment("1"), random_source=lambda: next(draws))
    manager.set_canary(deployment("2"), percent)
    assert {manager.pick().version for _ in range(2002)} == {expected}


async def test_removing_the_canary_sends_everything_to_production() -> None:
    manager = DeploymentManager(deployment("1"))
    canary = deployment("2")
    manager.set_canary(canary, 100)
    assert manager.pick() is canary
    manager.set_canary(None, 100)
    assert manager.canary_percent == 0 and {manager.pick().version for _ in range(100)} == {"1"}
    await manager.wait_retired()
    assert canary.engine.stopped  # type: ignore[attr-defined]


# ---- swaps and the watcher ----------------------------------------------------------------------------------
async def test_a_swap_drains_the_old_version_before_unloading_it() -> None:
    old, new = deployment("1"), deployment("2")
    manager = DeploymentManager(old, drain_timeout_s=5)
    old.acquire()  # a request still running on version 1
    manager.swap_production(new)
    assert manager.pick() is new
    await asyncio.sleep(0.05)
    assert not old.engine.stopped  # type: ignore[attr-defined]
    old.release()
    await manager.wait_retired()
    assert old.engine.stopped and not new.engine.stopped  # type: ignore[attr-defined]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace model loading with fake engines; the list records every version actually loaded."""
    loaded: list[str] = []

    async def fake_load(settings: InferenceSettings, version_spec: VersionSpec | None, alias: str) -> ModelDeployment:
        version = version_spec.version if version_spec else settings.model_version
        engine = FakeEngine(version, fail_start=version.startswith("broken"))
        await engine.start()
        loaded.append(version)
        return ModelDeployment(engine, version, alias, artifact_uri=version_spec.artifact_uri if version_spec else None)

    monkeypatch.setattr(watcher_module, "load_deployment", fake_load)
    monkeypatch.setattr(app_module, "load_deployment", fake_load)
    return loaded


def ready(metrics: InferenceMetrics, registry: CollectorRegistry, version: str) -> float | None:
    return registry.get_sample_value("llmops_inference_model_ready", {"model": MODEL, "version": version})


async def test_promoting_the_challenger_reuses_its_engine(loads: list[str]) -> None:
    settings = InferenceSettings(served_model_name=MODEL, canary_alias="challenger", canary_percent=10)
    registry = CollectorRegistry()
    metrics = InferenceMetrics(registry)
    first = deployment("1")
    manager = DeploymentManager(first, drain_timeout_s=5)
    watcher = AliasWatcher(settings, manager, metrics)
    await watcher.on_change("challenger", spec("2"))
    assert loads == ["2"] and watcher.current("challenger") == "2" and manager.canary_percent == 10
    await watcher.on_change("production", spec("2"))  # the challenger won: promote it
    assert loads == ["2"], "the loaded challenger is promoted, not loaded a second time"
    assert manager.production is manager.canary and watcher.current("production") == "2"
    await manager.wait_retired()
    assert first.engine.stopped  # type: ignore[attr-defined]
    assert ready(metrics, registry, "1") == 0 and ready(metrics, registry, "2") == 1
    await watcher.on_change("challenger", spec("3"))  # a new challenger: version 2 keeps serving production
    await watcher.on_change("challenger", None)  # and the challenger alias is removed again
    await manager.wait_retired()
    assert loads == ["2", "3"] and manager.canary is None
    assert not manager.production.engine.stopped  # type: ignore[attr-defined]
    assert ready(metrics, registry, "3") == 0 and ready(metrics, registry, "2") == 1


def test_a_model_from_the_settings_is_not_taken_for_a_registry_version() -> None:
    settings = InferenceSettings(served_model_name=MODEL)
    manager = DeploymentManager(deployment("1", registered=False))
    watcher = AliasWatcher(settings, manager, InferenceMetrics(CollectorRegistry()))
    # Registry down at start, the packaged model serves as "1": the first poll that reaches the registry must
    # load what production names, even when that is also called version 1.
    assert watcher.current("production") is None
    assert manager.find("1", "file:///m/1.gguf") is None


# ---- through HTTP -------------------------------------------------------------------------------------------
@pytest.fixture
def serve(loads: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start the real app (routes, serving, metrics) over fake engines and a fake registry answer."""
    aliases: dict[str, VersionSpec | None] = {}

    async def resolve(self: RegistrySource, alias: str) -> VersionSpec | None:
        return aliases.get(alias)

    monkeypatch.setattr(RegistrySource, "resolve", resolve)

    def start(percent: float, **resolved: VersionSpec | None) -> TestClient:
        aliases.update(resolved)
        settings = InferenceSettings(
            served_model_name=MODEL,
            registry_url="http://registry.invalid",
            registry_poll_s=3600,
            canary_alias="challenger",
            canary_percent=percent,
            dev_mode=True,  # not about the service token (test_service_auth.py is)
        )
        return TestClient(create_app(settings), raise_server_exceptions=False)

    return start


def chat(client: TestClient, stream: bool = False) -> tuple[str, str, str]:
    """(x-model-version header, version named in system_fingerprint, producer named in the content)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": stream}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if not stream:
        data = response.json()
        return response.headers["x-model-version"], data["system_fingerprint"], data["choices"][0]["message"]["content"]
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert len({c["system_fingerprint"] for c in chunks}) == 1  # every chunk names the same version
    content = chunks[0]["choices"][0]["delta"]["content"]
    return response.headers["x-model-version"], chunks[0]["system_fingerprint"], content


def test_every_response_names_the_version_that_produced_it(serve: Any) -> None:
    with serve(50, production=spec("1"), challenger=spec("2")) as client:
        seen: Counter[str] = Counter()
        for i in range(60):
            header, fingerprint, content = chat(client, stream=i % 2 == 1)
            assert fingerprint == f"{MODEL}@{header}" and content == f"by {header}"
            seen[header] += 1
        assert set(seen) == {"1", "2"}, seen  # P(one side never drawn in 60 at 50%) is about 1e-18
        listed = client.get("/v1/models").json()["data"][0]
        assert listed["version"] == "1" and listed["canary"] == {"version": "2", "percent": 50}
        metrics = client.get("/metrics").text
    for version in ("1", "2"):
        labels = {"model": MODEL, "version": version, "endpoint": "chat"}
        assert sample(metrics, "llmops_inference_requests_total", status="ok", **labels) == seen[version]
        assert sample(metrics, "llmops_inference_request_duration_seconds_count", **labels) == seen[version]
        del labels["endpoint"]
        assert sample(metrics, "llmops_inference_prompt_tokens_total", **labels) == 5 * seen[version]
        assert sample(metrics, "llmops_inference_completion_tokens_total", **labels) > 0


def test_a_broken_challenger_does_not_stop_production_from_serving(serve: Any) -> None:
    with serve(50, production=spec("1"), challenger=spec("broken-2")) as client:
        assert client.get("/readyz").status_code == 200
        assert {chat(client)[0] for _ in range(20)} == {"1"}
        assert client.get("/v1/models").json()["data"][0]["canary"] is None


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one series in a /metrics page (None when absent)."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None
