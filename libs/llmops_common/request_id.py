"""Request ids: taken from the caller's `x-request-id` when sane, else minted; visible to logs and errors."""

from __future__ import annotations

import contextvars
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = b"x-request-id"


def new_request_id() -> str:
    """Mint a short random id that is safe in headers and logs."""
    return "req_" + secrets.token_hex(12)


def current_request_id() -> str | None:
    """The id of the request being handled on this task, if any."""
    return _request_id.get()


class RequestIdMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == HEADER:
                candidate = value.decode("latin-1")
                rid = candidate if _SAFE_ID.match(candidate) else None
                break
        rid = rid or new_request_id()
        token = _request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(h[0] == HEADER for h in headers):
                    headers.append((HEADER, raw))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


def bind_request_id(request_id: str) -> None:
    """Set the request id of the current task (work that is a request without HTTP, e.g. one batch line)."""
    _request_id.set(request_id)
