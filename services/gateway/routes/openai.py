"""OpenAI-compatible routes: thin wrappers over ProxyService."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from llmops_common.errors import APIError
from llmops_common.openapi_errors import STREAMING_RESPONSES
from services.gateway.proxy import Completed, ProxyService
from services.gateway.requests import Kind
from services.gateway.schemas import Me, OpenAIRequestDoc

router = APIRouter(prefix="/v1", tags=["openai"])
_BODY_DOC = {"requestBody": {"content": {"application/json": {"schema": OpenAIRequestDoc.model_json_schema()}}}}


def _proxy(request: Request) -> ProxyService:
    return request.app.state.proxy


async def _forward(request: Request, kind: Kind) -> Response:
    started = time.perf_counter()
    proxy = _proxy(request)
    try:
        record = await proxy.authenticate(request.headers.get("authorization"))
    except APIError:
        raise  # counted by reason in llmops_gateway_auth_failures_total
    except BaseException as exc:  # the key store is down, or a bug: still a 5xx the metrics must show
        proxy.count_refusal("unknown", "unknown", exc)
        raise
    service_token = request.headers.get("x-llmops-service-token")  # lets RAG mark retrieved context (stages/admit.py)
    result = await proxy.forward(record, kind, await request.body(), started, service_token)
    if isinstance(result, Completed):
        return Response(result.body, status_code=result.status, media_type="application/json", headers=result.headers)
    return StreamingResponse(
        result.chunks, media_type="text/event-stream", headers=result.headers | {"cache-control": "no-cache"}
    )


@router.post("/chat/completions", openapi_extra=_BODY_DOC, responses=STREAMING_RESPONSES)
async def chat_completions(request: Request) -> Response:
    """Chat completions through the gateway's auth, limits, routing and metering."""
    return await _forward(request, "chat")


@router.post("/completions", openapi_extra=_BODY_DOC, responses=STREAMING_RESPONSES)
async def completions(request: Request) -> Response:
    """Text completions through the gateway's auth, limits, routing and metering."""
    return await _forward(request, "completion")


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Models the caller's key may use, with their prices."""
    proxy = _proxy(request)
    record = await proxy.authenticate(request.headers.get("authorization"))
    return proxy.list_models(record)


@router.get("/me", response_model=Me)
async def me(request: Request) -> Me:
    """The team and project of the caller's key (other services use it for tenancy)."""
    record = await _proxy(request).authenticate(request.headers.get("authorization"))
    return Me(key_id=record.key_id, team=record.team, project=record.project, allowed_models=record.allowed_models)
