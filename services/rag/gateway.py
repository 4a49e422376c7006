"""Client of the gateway: who a key belongs to (/v1/me, cached briefly) and chat completions as the caller."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: its bearer key (forwarded to the gateway) and its team."""

    key: str
    team: str
    project: str
    key_id: str


class GatewayUnavailable(Exception):
    """The gateway (or the LLM behind it) could not be reached or failed with a 5xx."""


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


class GatewayClient:
    """One pooled HTTP client; the /v1/me cache is per instance (per app), not a module global."""

    def __init__(self, base_url: str, timeout_s: float, me_ttl_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=3.0))
        self._me_ttl_s = me_ttl_s
        self._me_cache: dict[str, tuple[float, Caller | None]] = {}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def whoami(self, key: str) -> Caller | None:
        """The caller behind a key, None for a key the gateway rejects (401)."""
        hit = self._me_cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            resp = await self._http.get("/v1/me", headers={"authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"gateway unreachable at {self.base_url}: {exc}") from exc
        if resp.status_code in (401, 403):
            caller = None
        elif resp.status_code == 200:
            data = resp.json()
            caller = Caller(key, str(data["team"]), str(data.get("project", "")), str(data.get("key_id", "")))
        else:
            raise GatewayUnavailable(f"gateway /v1/me answered {resp.status_code}")
        if len(self._me_cache) > 10_000:
            self._me_cache.clear()  # bound memory under key churn; entries are seconds-cheap to refetch
        self._me_cache[key] = (time.monotonic() + self._me_ttl_s, caller)
        return caller

    def _raise_for(self, status: int, content: bytes, retry_after: str | None = None) -> None:
        if status >= 500:
            raise GatewayUnavailable(f"gateway answered {status}: {content[:200]!r}")
        if status >= 400:
            try:
                body = orjson.loads(content)
            except orjson.JSONDecodeError:
                body = {}
            raise GatewayRefused(status, body if isinstance(body, dict) else {}, retry_after)

    async def chat(self, key: str, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """A non-streaming chat completion; returns (body, response headers)."""
        try:
            resp = await self._http.post(
                "/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}
            )
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"LLM call through the gateway failed: {exc}") from exc
        self._raise_for(resp.status_code, resp.content, resp.headers.get("retry-after"))
        return resp.json(), dict(resp.headers)

    async def chat_stream(self, key: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream chat chunks; errors before the first byte raise, so the caller can still degrade."""
        request = self._http.build_request(
            "POST",
            "/v1/chat/completions",
            json=payload | {"stream": True},
            headers={"authorization": f"Bearer {key}"},
        )
        try:
            resp = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"LLM call through the gateway failed: {exc}") from exc
        if resp.status_code >= 400:
            content = await resp.aread()
            await resp.aclose()
            self._raise_for(resp.status_code, content, resp.headers.get("retry-after"))
        return self._iter_sse(resp)

    async def _iter_sse(self, resp: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                yield orjson.loads(data)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(f"LLM stream broke: {exc}") from exc
        finally:
            await resp.aclose()
