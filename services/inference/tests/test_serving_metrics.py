"""The serving layer's metrics tell the truth: a request refused by admission control is counted in
`llmops_inference_admission_rejections_total` (an alert and two panels read it) and as a `rejected` request.
A FAKE engine that blocks until released stands in for llama.cpp; admission is real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.inference.admission import AdmissionController, Overloaded
from services.inference.deployments import DeploymentManager, ModelDeployment
from services.inference.metrics import InferenceMetrics
from services.inference.serving import ServingService


class BlockingEngine:
    """Holds its generation slot until `release` is set."""

    name = "fake"
    context_length = 2048

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def is_ready(self) -> bool:
        return True

    async def generate(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        await self.release.wait()
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}], "usage": {}}

    async def stream(self, kind: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        await self.release.wait()
        yield {"choices": [{"index": 0, "delta": {"content": "ok"}}]}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_request_refused_by_admission_is_counted(streamed: bool) -> None:
    registry = CollectorRegistry()
    engine = BlockingEngine()
    dep = ModelDeployment(engine, "1")  # type: ignore[arg-type]
    serving = ServingService(
        DeploymentManager(dep),
        AdmissionController(max_running=1, max_queued=0, queue_timeout_s=5),
        InferenceMetrics(registry),
        served_model_name="m",
        default_max_tokens=16,
    )
    payload = {"messages": [{"role": "user", "content": "hi"}]}
    running = asyncio.create_task(serving.generate("chat", payload, dep))
    await asyncio.sleep(0.01)  # the first request holds the only slot
    assert sample(registry, "llmops_inference_admission_rejections_total") == 0
    with pytest.raises(Overloaded):
        if streamed:
            await serving.stream("chat", payload, dep)
        else:
            await serving.generate("chat", payload, dep)
    assert sample(registry, "llmops_inference_admission_rejections_total") == 1
    endpoint = "chat"
    assert (
        sample(
            registry, "llmops_inference_requests_total", model="m", version="1", endpoint=endpoint, status="rejected"
        )
        == 1
    )
    engine.release.set()
    await running
    assert dep.inflight == 0
