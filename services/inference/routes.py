"""Thin HTTP routes: validate, call the serving layer, map errors to the envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Security
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPBearer

from llmops_common.errors import APIError, error_body
from llmops_common.openapi_errors import STREAMING_RESPONSES
from llmops_common.responses import JSONBytesResponse
from llmops_common.sse import DONE, sse_frame
from services.inference.admission import Overloaded
from services.inference.deployments import ModelDeployment
from services.inference.engines.base import EngineError, EngineUnavailable, Kind
from services.inference.schemas import ChatCompletionRequest, CompletionRequest
from services.inference.serving import ServingError, ServingService

# ServiceTokenMiddleware enforces the token; this dependency only declares it in the OpenAPI document.
service_token = HTTPBearer(
    auto_error=False,
    scheme_name="serviceToken",
    description="The inference service token (INFERENCE_SERVICE_TOKEN): only platform services hold it; clients go "
    "through the gateway. The OpenAI clients send it as their api_key.",
)
router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Security(service_token)])


def get_serving(request: Request) -> ServingService:
    """The app's serving service (set up in the lifespan)."""
    serving: ServingService | None = getattr(request.app.state, "serving", None)
    if serving is None:
        raise APIError(
            503, "model_not_ready", "the model is still loading; retry shortly", headers={"retry-after": "2"}
        )
    if not serving.is_ready():  # loaded once, gone now: a dead llama.cpp process, an unreachable upstream
        raise APIError(
            503,
            "engine_unavailable",
            f"the engine of model version {serving.manager.production.version} is not available (its process "
            "exited, or its upstream is unreachable); see the service log",
            headers={"retry-after": "2"},
        )
    return serving


def _as_api_error(exc: Exception) -> APIError:
    if isinstance(exc, Overloaded):
        return APIError(429, "server_overloaded", exc.reason, headers={"retry-after": str(exc.retry_after_s)})
    if isinstance(exc, EngineError | ServingError):
        return APIError(exc.status, exc.code, exc.message)
    if isinstance(exc, EngineUnavailable):
        return APIError(503, "engine_unavailable", f"the engine failed: {exc}")
    raise exc


def _headers(serving: ServingService, dep: ModelDeployment) -> dict[str, str]:
    return {"x-model-version": dep.version, "x-model": serving.model}


async def _run(request: Request, kind: Kind, body: dict[str, Any]) -> Any:
    serving = get_serving(request)
    dep = serving.manager.pick()  # fixed for this request, whatever swaps happen meanwhile
    try:
        payload = serving.prepare(kind, body, dep)
        if not body.get("stream"):
            result = await serving.generate(kind, payload, dep)
            return JSONBytesResponse(result, headers=_headers(serving, dep))
        chunks = await serving.stream(kind, payload, dep)
        first = await anext(chunks)  # engine errors (e.g. prompt too long) become a proper 4xx here
    except (Overloaded, EngineError, ServingError, EngineUnavailable) as exc:
        raise _as_api_error(exc) from exc
    except StopAsyncIteration:
        first = None
        chunks = None
    return StreamingResponse(
        _sse(first, chunks),
        media_type="text/event-stream",
        headers=_headers(serving, dep) | {"cache-control": "no-cache"},
    )


async def _sse(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]] | None) -> AsyncIterator[bytes]:
    if first is not None:
        yield sse_frame(first)
    if rest is not None:
        try:
            async for chunk in rest:
                yield sse_frame(chunk)
        except (EngineError, EngineUnavailable) as exc:
            err = _as_api_error(exc)
            yield sse_frame(error_body(err.status, err.code, err.message))
    yield DONE


@router.post("/chat/completions", responses=STREAMING_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """OpenAI chat completions; `stream: true` answers with SSE ending in a usage chunk and [DONE]."""
    return await _run(request, "chat", body.model_dump(exclude_unset=True, exclude_none=True) | {"model": body.model})


@router.post("/completions", responses=STREAMING_RESPONSES)
async def completions(body: CompletionRequest, request: Request) -> Any:
    """OpenAI text completions (one prompt per request)."""
    data = body.model_dump(exclude_unset=True, exclude_none=True)
    if isinstance(data.get("prompt"), list):
        data["prompt"] = data["prompt"][0]
    return await _run(request, "completion", data)


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The served model with its version and context length."""
    return get_serving(request).list_models()
