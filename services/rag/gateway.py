"""Client of the gateway: who a key belongs to (llmops_common.identity), metering of retrieval and ingestion,
and chat completions as the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from llmops_common.http import AsyncHTTP, HTTPError
from llmops_common.identity import GatewayIdentity, GatewayUnavailable
from llmops_common.sse import SSEReader

__all__ = ["Caller", "GatewayClient", "GatewayRefused", "GatewayUnavailable"]


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: its bearer key (forwarded to the gateway) and its team."""

    key: str
    team: str
    project: str
    key_id: str


# Refusals about the caller's key (invalid, out of budget, model not allowed, over its rate) that every RAG route
# passes on as they are, whatever step made the call.
PASSED_ON = frozenset({401, 402, 403, 429})


class GatewayRefused(Exception):
    """The gateway answered with a 4xx (bad key, over limit, blocked by a guardrail): passed on as is."""

    def __init__(self, status: int, body: dict[str, Any], retry_after: str | None = None) -> None:
        raw = body.get("error")
        err: dict[str, Any] = raw if isinstance(raw, dict) else {}
        super().__init__(err.get("message", f"gateway answered {status}"))
        self.status = status
        self.retry_after = retry_after  # the gateway's Retry-After on a 429, passed on to RAG's caller
        self.code = str(err.get("code") or "gateway_error")
        self.message = str(err.get("message") or f"gateway answered {status}")


def _headers(key: str, service_token: str | None) -> dict[str, str]:
    """The caller's key, and RAG's service token when the payload marks retrieved context."""
    headers = {"authorization": f"Bearer {key}"}
    if service_token:
        headers["x-llmops-service-token"] = service_token
    return headers


class GatewayClient:
    """One pooled HTTP client, and the shared identity client (cache dropped on the gateway's key-change feed)."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        me_ttl_s: float,
        *,
        keys_redis_url: str | None = None,
        keys_prefix: str = "llmops:gw",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = AsyncHTTP(self.base_url, timeout_s=timeout_s, connect_s=3.0)
        self.identity = GatewayIdentity(self.base_url, redis_url=keys_redis_url, prefix=keys_prefix, ttl_s=me_ttl_s)

    async def start(self) -> None:
        """Subscribe to the gateway's key-change feed (answers are cached only while subscribed)."""
        await self.identity.start()

    async def aclose(self) -> None:
        """Close the connection pool and the identity client."""
        await self.identity.aclose()
        await self._http.aclose()

    async def whoami(self, key: str) -> Caller | None:
        """The caller behind a key, None for a key the gateway rejects (401); GatewayUnavailable otherwise."""
        who = await self.identity.resolve(key)
        return None if who is None else Caller(key, who.team, who.project, who.key_id)

    def _raise_for(self, status: int, content: bytes, retry_after: str | None = None) -> None:
        if status >= 500:
            raise GatewayUnavailable(f"gateway answered {status}: {content[:200]!r}")
        if status >= 400:
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                body = {}
            raise GatewayRefused(status, body if isinstance(body, dict) else {}, retry_after)

    async def admit(self, key: str, kind: str, tokens: int = 0) -> None:
        """Count one retrieval or ingestion request against the caller's key (its rpm, shared with chat, and its
        budget) through the gateway's POST /v1/usage/admit, with the tokens it embeds (TPM, charged there);
        `rag.embed` counts only tokens. GatewayRefused when the gateway says no."""
        try:
            resp = await self._http.post(
                "/v1/usage/admit",
                json={"kind": kind, "units": 1, "tokens": tokens},
                headers={"authorization": f"Bearer {key}"},
            )
        except HTTPError as exc:
            raise GatewayUnavailable(f"the gateway could not meter the request: {exc}") from exc
        self._raise_for(resp.status_code, resp.content, resp.headers.get("retry-after"))

    async def chat(
        self, key: str, payload: dict[str, Any], service_token: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A non-streaming chat completion; returns (body, response headers). `service_token` lets the
        gateway trust the payload's retrieved-context marks."""
        try:
            resp = await self._http.post("/v1/chat/completions", json=payload, headers=_headers(key, service_token))
        except HTTPError as exc:
            raise GatewayUnavailable(f"LLM call through the gateway failed: {exc}") from exc
        self._raise_for(resp.status_code, resp.content, resp.headers.get("retry-after"))
        return resp.json(), resp.headers

    async def chat_stream(
        self, key: str, payload: dict[str, Any], service_token: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream chat chunks; errors before the first byte raise, so the caller can still degrade."""
        try:
            resp = await self._http.open(
                "POST", "/v1/chat/completions", json=payload | {"stream": True}, headers=_headers(key, service_token)
            )
            if resp.status >= 400:
                try:
                    content = await resp.read()
                finally:
                    resp.release()
                self._raise_for(resp.status, content, resp.headers.get("retry-after"))
        except HTTPError as exc:
            raise GatewayUnavailable(f"LLM call through the gateway failed: {exc}") from exc
        return self._iter_sse(resp)

    async def _iter_sse(self, resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in SSEReader(resp.content).events():
                yield event
        except HTTPError as exc:
            raise GatewayUnavailable(f"LLM stream broke: {exc}") from exc
        finally:
            resp.release()
