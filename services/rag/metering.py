"""Metering of RAG's own work against the caller's key at the gateway (POST /v1/usage/admit).

Every query and ingestion counts one request (requests per minute shared with chat; refused once a budget is
spent), and the tokens the embedder reads are reported with it and charged there (TPM and budget, priced by the
gateway's GATEWAY_EMBEDDING_PRICE_PER_1M) before the embedding runs: a query's tokens with its admission, an
ingestion's group by group as its chunks are embedded (`rag.embed`, no extra request). The count is the embedder's
own tokenizer (word pieces, at most the model's 256-token window per text, special tokens not counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from llmops_common.errors import APIError
from services.rag.gateway import PASSED_ON, Caller, GatewayClient, GatewayRefused, GatewayUnavailable
from services.rag.ingest import EmbeddingRefused

JOB_METER_TIMEOUT_S = 60.0


async def admit(gateway: GatewayClient, caller: Caller, kind: str, tokens: int = 0) -> None:
    """Count the request (and charge `tokens`) or raise the APIError to answer: the gateway's own refusal (401, 402,
    403, 429 with its Retry-After), else 503 gateway_unavailable (never served unmetered)."""
    try:
        await gateway.admit(caller.key, kind, tokens)
    except GatewayUnavailable as exc:
        raise APIError(503, "gateway_unavailable", str(exc), headers={"retry-after": "5"}) from exc
    except GatewayRefused as exc:
        if exc.status not in PASSED_ON:  # e.g. a gateway without /v1/usage/admit: refuse, never run unmetered
            raise APIError(
                503, "gateway_unavailable", f"the gateway could not meter the request: {exc.status} {exc.message}"
            ) from exc
        headers = {"retry-after": exc.retry_after} if exc.retry_after else None
        raise APIError(
            exc.status, exc.code, f"the gateway refused the request: {exc.message}", headers=headers
        ) from exc


def job_meter(gateway: GatewayClient, caller: Caller, loop: asyncio.AbstractEventLoop) -> Callable[[int], None]:
    """A charge an ingestion job calls from its worker thread before embedding a group of `tokens` tokens; it runs
    on the app's event loop (where the gateway client lives) and raises EmbeddingRefused when the gateway says no,
    so the job stops there and says why (a re-ingest skips what was indexed)."""

    def charge(tokens: int) -> None:
        try:
            asyncio.run_coroutine_threadsafe(gateway.admit(caller.key, "rag.embed", tokens), loop).result(
                JOB_METER_TIMEOUT_S
            )
        except GatewayRefused as exc:
            raise EmbeddingRefused(exc.code, f"the gateway refused embedding {tokens} tokens: {exc.message}") from exc
        except (GatewayUnavailable, RuntimeError, TimeoutError) as exc:  # RuntimeError: the loop has closed
            raise EmbeddingRefused(
                "gateway_unavailable", f"the gateway could not meter embedding {tokens} tokens: {exc}"
            ) from exc

    return charge
