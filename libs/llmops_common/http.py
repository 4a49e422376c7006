"""The platform's one HTTP client library, aiohttp, with the two faces every caller needs.

aiohttp, not httpx: relaying a request through the gateway's upstream path costs the client ~0.12-0.15 ms of CPU
with aiohttp and ~0.9-1.2 ms with httpx, 8x (bench/http_client_ab.py, bench/results/http_client_ab.md): about the
whole gateway's CPU per request. The hot paths (gateway upstream, guardrails, inference upstream) use aiohttp's
session directly; everything else goes through these small faces:

- `AsyncHTTP`: one pooled session for a service's event loop (registry pollers, identity, RAG's gateway calls).
- `BlockingHTTP`: the same calls for code that blocks (jobs, CLIs, worker threads: RAG ingestion, the guardrails
  model watcher). Its calls run on one shared background event loop, so it is thread-safe and pooled, and it works
  from any thread, including one that runs an event loop of its own.

Both answer a `Reply` (status_code, headers, content, json(), raise_for_status()), read whole; `HTTPError` is what
a call raises when the server could not be reached, timed out, or (raise_for_status) answered an error status.
As httpx did: timeouts count `timeout_s` between bytes (not for the whole answer) and `connect_s` to connect, and
redirects are answers, not followed. Unlike httpx, proxy variables (HTTP_PROXY...) are not read: service-to-service
calls go direct.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

T = TypeVar("T")


class StatusError(aiohttp.ClientError):
    """raise_for_status: the server answered an error status."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"answered {reply.status_code}: {reply.text[:200]}")
        self.reply = reply


# What a call raises when it did not get a usable answer.
HTTPError = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class Reply:
    """A whole answer; header names in lower case."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    url: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return orjson.loads(self.content)

    def raise_for_status(self) -> None:
        """StatusError when the status is 4xx or 5xx."""
        if self.status_code >= 400:
            raise StatusError(self)


def client_timeout(timeout_s: float | None, connect_s: float | None = None) -> aiohttp.ClientTimeout:
    """`timeout_s` between bytes (None: none), `connect_s` to connect (default: min(timeout_s, 3))."""
    if connect_s is None and timeout_s is not None:
        connect_s = min(timeout_s, 3.0)
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=timeout_s)


class AsyncHTTP:
    """One pooled aiohttp session, opened on first use (inside the running loop), with a base URL and default
    headers; `http.post("/v1/x", json=...)` reads the whole answer, `http.stream(...)` yields the open response."""

    def __init__(
        self,
        base_url: str = "",
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = 5.0,
        connect_s: float | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = client_timeout(timeout_s, connect_s)
        self._auth = aiohttp.BasicAuth(*auth) if auth else None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, auth=self._auth)
        return self._session

    def _args(self, url: str, headers: dict[str, str] | None, json: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if json is not None:
            kwargs["data"] = orjson.dumps(json)
            headers = {"content-type": "application/json", **(headers or {})}
        if isinstance(kwargs.get("timeout"), (int, float)):
            kwargs["timeout"] = client_timeout(kwargs["timeout"])
        kwargs.setdefault("allow_redirects", False)  # as httpx: a redirect is an answer, never followed silently
        full = url if "://" in url else self.base_url + url
        return {"url": full, "headers": self.headers | (headers or {}), **kwargs}

    async def request(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        """One call, read whole. `kwargs` go to aiohttp (params, data, timeout: seconds or a ClientTimeout)."""
        async with self.session.request(method, **self._args(url, headers, json, kwargs)) as resp:
            content = await resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, content, str(resp.url))

    async def get(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("POST", url, **kwargs)

    async def open(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        """The open response, its body unread (`resp.content` yields lines): the caller must `release()` it."""
        return await self.session.request(method, **self._args(url, headers, json, kwargs))

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """`open`, released on exit."""
        resp = await self.open(method, url, json=json, headers=headers, **kwargs)
        try:
            yield resp
        finally:
            resp.release()

    async def aclose(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Loop:
    """The one background event loop behind every BlockingHTTP (started on first use, a daemon thread)."""

    _loop: asyncio.AbstractEventLoop | None = None
    _lock = threading.Lock()

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T]) -> T:
        with cls._lock:
            if cls._loop is None:
                cls._loop = asyncio.new_event_loop()
                threading.Thread(target=cls._loop.run_forever, name="llmops-http", daemon=True).start()
            loop = cls._loop
        if threading.current_thread().name == "llmops-http":
            coro.close()
            raise RuntimeError("BlockingHTTP called from its own loop: use AsyncHTTP there")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


class BlockingHTTP:
    """AsyncHTTP's calls for code that blocks: same arguments, same Reply."""

    def __init__(self, base_url: str = "", **kwargs: Any) -> None:
        self._http = AsyncHTTP(base_url, **kwargs)
        self.headers = self._http.headers

    def request(self, method: str, url: str, **kwargs: Any) -> Reply:
        """One call, read whole."""
        return _Loop.run(self._http.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> Reply:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Reply:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Close the pool."""
        if self._http._session is not None:
            _Loop.run(self._http.aclose())

    def __enter__(self) -> BlockingHTTP:
        return self

    def __del__(self) -> None:
        # One dropped without close() (a client kept for a process's life, then collected): close its pool on the
        # loop, so aiohttp does not warn about an unclosed session.
        session, loop = self._http._session, _Loop._loop
        if session is not None and not session.closed and loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(session.close(), loop)

    def __exit__(self, *_: object) -> None:
        self.close()
