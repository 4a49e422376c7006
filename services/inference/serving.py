"""The serving layer: admission, engine call, metrics and OpenAI response shaping; no HTTP here."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

from llmops_common.telemetry import set_span_attributes
from services.inference.admission import AdmissionController, Overloaded
from services.inference.confidence import engine_request
from services.inference.deployments import DeploymentManager, ModelDeployment
from services.inference.engines.base import EngineError, Kind
from services.inference.metrics import InferenceMetrics


class ServingError(Exception):
    """A request the service refuses before it reaches the engine."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ServingService:
    """Serves one model name; the deployment manager says which loaded version answers each request."""

    def __init__(
        self,
        manager: DeploymentManager,
        admission: AdmissionController,
        metrics: InferenceMetrics,
        *,
        served_model_name: str,
        default_max_tokens: int,
        cost: CostModel | None = None,
    ) -> None:
        self.manager = manager
        self.cost = cost or CostModel()
        self.admission = admission
        admission.on_change = self._gauges
        self.metrics = metrics
        self.model = served_model_name
        self.default_max_tokens = default_max_tokens

    def is_ready(self) -> bool:
        """The production deployment can serve."""
        return self.manager.production.engine.is_ready()

    def list_models(self) -> dict[str, Any]:
        """The /v1/models body."""
        dep = self.manager.production
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model,
                    "object": "model",
                    "created": 0,
                    "owned_by": "llmops",
                    "version": dep.version,
                    "engine": dep.engine.name,
                    "max_model_len": dep.engine.context_length,
                    "canary": (
                        {"version": self.manager.canary.version, "percent": self.manager.canary_percent}
                        if self.manager.canary
                        else None
                    ),
                }
            ],
        }

    def prepare(self, kind: Kind, body: dict[str, Any], dep: ModelDeployment) -> dict[str, Any]:
        """Check the model name and size limits; return the payload for the engine."""
        if body["model"] != self.model:
            raise ServingError(
                404,
                "model_not_found",
                f"model '{body['model']}' is not served here; this service serves '{self.model}'",
            )
        payload = {k: v for k, v in body.items() if v is not None and k not in ("stream_options", "user", "n")}
        max_tokens = payload.pop("max_completion_tokens", None) or payload.get("max_tokens")
        if max_tokens is None:
            max_tokens = self.default_max_tokens if kind == "chat" else 16  # OpenAI's completions default
        if max_tokens >= dep.engine.context_length:
            raise ServingError(
                400,
                "context_length_exceeded",
                f"max_tokens={max_tokens} does not fit this model's context length of "
                f"{dep.engine.context_length} tokens (prompt + max_tokens must fit)",
            )
        payload["max_tokens"] = max_tokens
        return payload

    def _shape(self, result: dict[str, Any], dep: ModelDeployment) -> dict[str, Any]:
        result["model"] = self.model
        result["system_fingerprint"] = f"{self.model}@{dep.version}"
        return result

    def _record_usage(self, usage: dict[str, Any] | None, version: str) -> None:
        if usage:
            set_span_attributes(
                {
                    "gen_ai.request.model": self.model,
                    "gen_ai.response.model": f"{self.model}@{version}",
                    "gen_ai.usage.input_tokens": usage.get("prompt_tokens"),
                    "gen_ai.usage.output_tokens": usage.get("completion_tokens"),
                    "llmops.model_version": version,
                }
            )
            self.metrics.prompt_tokens.labels(self.model, version).inc(usage.get("prompt_tokens", 0))
            self.metrics.completion_tokens.labels(self.model, version).inc(usage.get("completion_tokens", 0))

    def _finish(self, endpoint: str, status: str, started: float, version: str) -> None:
        self.metrics.requests.labels(self.model, version, endpoint, status).inc()
        self.metrics.e2e.labels(self.model, version, endpoint).observe(time.perf_counter() - started)

    def _gauges(self) -> None:
        self.metrics.queue_depth.set(self.admission.queued)
        self.metrics.running.set(self.admission.running)
        self.metrics.queued_tokens.set(self.admission.queued_tokens)
        self.metrics.running_tokens.set(self.admission.running_tokens)

    async def generate(self, kind: Kind, payload: dict[str, Any], dep: ModelDeployment) -> dict[str, Any]:
        """Admit, run to completion on `dep`, record metrics."""
        endpoint = "chat" if kind == "chat" else "completions"
        started = time.perf_counter()
        status = "error"
        dep.acquire()  # before any await: a swap now cannot unload this version under us
        try:
            async with self.admission.slot(self.cost(payload)):
                self.metrics.queue_wait.labels(self.model).observe(time.perf_counter() - started)
                self._gauges()
                admitted = time.perf_counter()
                confidence = engine_request(kind, payload)
                result = await dep.engine.generate(kind, payload)
                if confidence is not None:
                    confidence.add(result.get("choices") or ())
                    confidence.into(result.get("usage"))
                # Non-streaming: the first token arrives with the last one.
                self.metrics.ttft.labels(self.model, dep.version).observe(time.perf_counter() - admitted)
            self._record_usage(result.get("usage"), dep.version)
            status = "ok"
            return self._shape(result, dep)
        except Overloaded:
            status = "rejected"
            self.metrics.rejections.inc()
            raise
        except EngineError:
            status = "client_error"
            raise
        finally:
            dep.release()
            self._gauges()
            self._finish(endpoint, status, started, dep.version)

    async def stream(self, kind: Kind, payload: dict[str, Any], dep: ModelDeployment) -> AsyncIterator[dict[str, Any]]:
        """Admit (before the caller sends headers), then yield chunks; the last one carries usage."""
        endpoint = "chat" if kind == "chat" else "completions"
        started = time.perf_counter()
        slot = self.admission.slot(self.cost(payload))
        dep.acquire()
        try:
            await slot.__aenter__()  # raises Overloaded before any byte is sent
        except BaseException as exc:
            dep.release()
            if isinstance(exc, Overloaded):
                self.metrics.rejections.inc()
                self._finish(endpoint, "rejected", started, dep.version)
            raise
        self.metrics.queue_wait.labels(self.model).observe(time.perf_counter() - started)
        self._gauges()
        return self._stream_admitted(kind, payload, dep, slot, endpoint, started)

    async def _stream_admitted(
        self, kind: Kind, payload: dict[str, Any], dep: ModelDeployment, slot: Any, endpoint: str, started: float
    ) -> AsyncIterator[dict[str, Any]]:
        status = "error"
        admitted = time.perf_counter()
        last_token_at: float | None = None
        confidence = engine_request(kind, payload)
        try:
            async for chunk in dep.engine.stream(kind, payload):
                now = time.perf_counter()
                if _has_token(chunk):
                    if last_token_at is None:
                        self.metrics.ttft.labels(self.model, dep.version).observe(now - admitted)
                    else:
                        self.metrics.inter_token.labels(self.model, dep.version).observe(now - last_token_at)
                    last_token_at = now
                if confidence is not None:
                    confidence.add(chunk.get("choices") or ())
                    confidence.into(chunk.get("usage"))  # the last chunk: the whole answer has been counted
                if chunk.get("usage"):
                    self._record_usage(chunk["usage"], dep.version)
                yield self._shape(chunk, dep)
            status = "ok"
        except EngineError:
            status = "client_error"
            raise
        finally:
            await slot.__aexit__(None, None, None)
            dep.release()
            self._gauges()
            self._finish(endpoint, status, started, dep.version)


class CostModel:
    """What a request may cost the engine, in tokens, for admission: the prompt's tokens times `prompt_weight`
    plus the tokens it may generate (prepare() set max_tokens).

    The prompt has not been tokenized yet (the engine does that, in another process): its tokens are estimated
    from its characters (`chars_per_token`, about 4 for English with a BPE vocabulary) plus a few per message for
    the chat template's markers. An estimate is enough: it only decides what may run together.
    """

    PER_MESSAGE = 4  # <|im_start|>role ... <|im_end|> and the like

    def __init__(self, prompt_weight: float = 0.0, chars_per_token: float = 4.0) -> None:
        self.prompt_weight = prompt_weight  # 0: only what it may generate, as before the token budget
        self.chars_per_token = chars_per_token

    def prompt_tokens(self, payload: dict[str, Any]) -> int:
        """Estimated prompt tokens of a chat (`messages`) or completions (`prompt`) payload."""
        chars, messages = 0, payload.get("messages")
        if messages is not None:
            for message in messages:
                chars += _text_chars(message.get("content") if isinstance(message, dict) else None)
            overhead = self.PER_MESSAGE * len(messages)
        else:
            chars, overhead = _text_chars(payload.get("prompt")), 0
        return overhead + math.ceil(chars / self.chars_per_token)

    def __call__(self, payload: dict[str, Any]) -> float:
        generate = float(payload.get("max_tokens") or 1)
        if self.prompt_weight <= 0:
            return generate
        return generate + self.prompt_weight * self.prompt_tokens(payload)


def _text_chars(content: Any) -> int:
    """Characters of a message content or prompt: a string, OpenAI content parts, or a list of prompts."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(_text_chars(p.get("text") if isinstance(p, dict) else p) for p in content)
    return 0


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if (delta and delta.get("content")) or choice.get("text"):
            return True
    return False
