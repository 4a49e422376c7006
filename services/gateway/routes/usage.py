"""Metering of other services' requests against the caller's key (RAG calls it with the key it was given)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.gateway.pricing import nano_to_usd
from services.gateway.schemas import UsageAdmit

router = APIRouter(prefix="/v1", tags=["usage"])


@router.post(
    "/usage/admit",
    status_code=204,
    response_class=Response,
    responses={
        401: {"description": "missing, invalid or revoked key"},
        402: {"description": "the key's or team's budget is already spent"},
        429: {
            "description": "key_rpm_exceeded / team_rpm_exceeded / key_tpm_exceeded / team_tpm_exceeded, with "
            "Retry-After"
        },
        507: {"description": "state_store_full: the gateway's Redis is full (nothing was counted)"},
    },
)
async def admit_usage(body: UsageAdmit, request: Request) -> Response:
    """Count one request (a RAG query or ingestion) against the caller's key: the same requests-per-minute
    counters as chat, and refused once a budget is spent. With `tokens` (what the request embeds) they are checked
    against the tokens per minute and charged at the embedding price, atomically, before the work. 204 when
    admitted (`x-llmops-cost-usd`: what was charged); refusals as the chat path words them."""
    record = await request.app.state.proxy.authenticate(request.headers.get("authorization"))
    cost = await request.app.state.usage.admit(record, body.kind, body.tokens)
    return Response(status_code=204, headers={"x-llmops-cost-usd": f"{nano_to_usd(cost):.9f}"})
