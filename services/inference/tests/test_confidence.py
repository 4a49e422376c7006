"""usage.mean_logprob (services/inference/confidence.py): asked for with `mean_logprob: true`, computed from the
engine's per-token logprobs, which the caller only gets when it asked for `logprobs` itself. A fake engine stands in
for llama.cpp (the real one: tests/integration/test_gateway_to_feedback.py)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.inference.admission import AdmissionController
from services.inference.confidence import engine_request, token_logprobs
from services.inference.deployments import DeploymentManager, ModelDeployment
from services.inference.metrics import InferenceMetrics
from services.inference.serving import ServingService

MODEL = "m"
TOKENS = [-0.5, -2.0, -3.5]  # mean -2.0


def _logprobs(values: list[float]) -> dict[str, Any]:
    return {"content": [{"token": f"t{i}", "logprob": v, "top_logprobs": []} for i, v in enumerate(values)]}


class LogprobEngine:
    """Answers three tokens with logprobs when asked for them (as llama.cpp does), and records the payloads."""

    name = "fake"
    context_length = 2048

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def is_ready(self) -> bool:
        return True

    async def stop(self) -> None:
        return None

    async def generate(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.payloads.append(dict(payload))
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": "a b c"}}
        if payload.get("logprobs"):
            choice["logprobs"] = _logprobs(TOKENS)
        return {"choices": [choice], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}

    async def stream(self, kind: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.payloads.append(dict(payload))
        for i, value in enumerate(TOKENS):
            choice: dict[str, Any] = {"index": 0, "delta": {"content": f"t{i}"}}
            if payload.get("logprobs"):
                choice["logprobs"] = _logprobs([value])
            yield {"choices": [choice]}
        yield {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}


def _serving() -> tuple[ServingService, ModelDeployment, LogprobEngine]:
    engine = LogprobEngine()
    dep = ModelDeployment(engine, "1", artifact_uri=None)  # type: ignore[arg-type]
    metrics = InferenceMetrics(CollectorRegistry())
    serving = ServingService(
        DeploymentManager(dep), AdmissionController(2, 2, 5.0), metrics, served_model_name=MODEL, default_max_tokens=8
    )
    return serving, dep, engine


def test_both_logprob_shapes_are_read() -> None:
    assert token_logprobs(_logprobs([-1.0, -2.0])) == [-1.0, -2.0]
    assert token_logprobs({"token_logprobs": [None, -1.5, -0.5]}) == [-1.5, -0.5]  # legacy completions (vLLM)
    assert token_logprobs(None) == [] and token_logprobs({"content": None}) == []


@pytest.mark.parametrize(
    ("kind", "asks"), [("chat", {"logprobs": True, "top_logprobs": 1}), ("completion", {"logprobs": 1})]
)
def test_the_engine_is_asked_for_the_fewest_logprobs(kind: str, asks: dict[str, Any]) -> None:
    payload: dict[str, Any] = {"mean_logprob": True}
    confidence = engine_request(kind, payload)  # type: ignore[arg-type]
    assert payload == asks and confidence is not None and confidence.strip
    assert engine_request("chat", {"logprobs": False}) is None  # not asked: the payload is left alone


async def test_a_whole_answer_reports_the_mean_and_keeps_logprobs_to_itself() -> None:
    serving, dep, engine = _serving()
    result = await serving.generate("chat", {"model": MODEL, "messages": [], "mean_logprob": True}, dep)
    assert math.isclose(result["usage"]["mean_logprob"], -2.0)
    assert "logprobs" not in result["choices"][0]  # the caller did not ask for per-token logprobs
    assert "mean_logprob" not in engine.payloads[0]  # the engine never sees the platform's own field


async def test_a_caller_that_asked_for_logprobs_still_gets_them() -> None:
    serving, dep, _ = _serving()
    body = {"model": MODEL, "messages": [], "mean_logprob": True, "logprobs": True}
    result = await serving.generate("chat", body, dep)
    assert result["choices"][0]["logprobs"] == _logprobs(TOKENS) and math.isclose(result["usage"]["mean_logprob"], -2.0)


async def test_a_stream_reports_the_mean_of_all_chunks_in_its_usage_chunk() -> None:
    serving, dep, _ = _serving()
    chunks = [
        c async for c in await serving.stream("chat", {"model": MODEL, "messages": [], "mean_logprob": True}, dep)
    ]
    assert all("logprobs" not in choice for c in chunks for choice in c["choices"])
    assert math.isclose(chunks[-1]["usage"]["mean_logprob"], -2.0)


async def test_without_the_field_nothing_changes() -> None:
    serving, dep, engine = _serving()
    result = await serving.generate("chat", {"model": MODEL, "messages": []}, dep)
    assert "mean_logprob" not in result["usage"] and "logprobs" not in engine.payloads[0]
