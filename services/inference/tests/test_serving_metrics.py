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
from services.inference.serving import CostModel, ServingService


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


async def settle() -> None:
    """Let every ready task run until it blocks (the fake engine waits for its event, not for time)."""
    for _ in range(10):
        await asyncio.sleep(0)


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


async def test_the_token_load_is_exposed_and_a_long_prompt_costs_more() -> None:
    """Admission weighs a request by its prompt as well as its max_tokens; the gauges show the token load."""
    registry = CollectorRegistry()
    engine = BlockingEngine()
    dep = ModelDeployment(engine, "1")  # type: ignore[arg-type]
    serving = ServingService(
        DeploymentManager(dep),
        AdmissionController(max_running=2, max_queued=4, queue_timeout_s=5, max_tokens=200),
        InferenceMetrics(registry),
        served_model_name="m",
        default_max_tokens=16,
        cost=CostModel(prompt_weight=0.5, chars_per_token=4),
    )
    messages = [{"role": "system", "content": "x" * 800}, {"role": "user", "content": "q" * 40}]
    rag = {"messages": messages, "max_tokens": 32}
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 32}
    assert serving.cost(rag) == 32 + 0.5 * (2 * 4 + 200 + 10)  # 218 tokens: markers + characters / 4
    assert serving.cost(chat) == 32 + 0.5 * (4 + 1)
    first = asyncio.create_task(serving.generate("chat", rag, dep))
    await settle()
    second = asyncio.create_task(serving.generate("chat", rag, dep))  # 141 + 141 > 200: it queues
    await settle()
    assert sample(registry, "llmops_inference_running_tokens") == 141
    assert sample(registry, "llmops_inference_queued_tokens") == 141
    assert sample(registry, "llmops_inference_running_requests") == 1
    engine.release.set()
    await asyncio.gather(first, second)
    assert sample(registry, "llmops_inference_running_tokens") == 0
    assert sample(registry, "llmops_inference_queued_tokens") == 0


def test_the_prompt_estimate_reads_every_shape_of_prompt() -> None:
    cost = CostModel(prompt_weight=1.0, chars_per_token=4)
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a" * 40}, {"type": "image_url"}]}]}
    assert cost.prompt_tokens(parts) == 4 + 10
    assert cost.prompt_tokens({"prompt": "b" * 41}) == 11
    assert cost.prompt_tokens({"prompt": ["c" * 8]}) == 2
    assert cost({"prompt": "b" * 40, "max_tokens": 16}) == 26
    assert CostModel()({"prompt": "b" * 4000, "max_tokens": 16}) == 16  # weight 0: max_tokens only, as before
