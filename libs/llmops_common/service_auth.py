"""Service-to-service authentication and the security headers every service sends.

Internal services (inference, guardrails, RAG's internal routes, the registry's writes) answer only callers that
present a service token from settings: `Authorization: Bearer <token>` (the OpenAI clients send exactly that
as their api_key, so the gateway's upstream calls and the contract suites need nothing special). Several tokens
may be configured at once so a token can be rotated without downtime. Health and metrics routes stay open:
probes and Prometheus scrape them from inside the internal network.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Sequence

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops_common.errors import error_body

log = logging.getLogger("llmops.service_auth")

OPEN_PATHS: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"})

# Sent on every response: no MIME sniffing, no framing, no referrer leaks, nothing cached by intermediaries.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


class MissingServiceToken(RuntimeError):
    """Raised at start when a service that must be authenticated has no token and is not in dev mode."""


def service_headers(token: str | None) -> dict[str, str]:
    """The header a caller adds to reach an internal service (empty when no token is configured)."""
    return {"authorization": f"Bearer {token}"} if token else {}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None: the one parser every service uses."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of raw ASGI headers, or None."""
    for name, value in headers:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


def token_matches(presented: str | None, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every configured token."""
    if not presented:
        return False
    given = presented.encode()
    return any(hmac.compare_digest(given, t.encode()) for t in tokens)


async def _send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    headers += SECURITY_HEADERS  # this reply may come from outside SecurityHeadersMiddleware
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServiceTokenMiddleware:
    """Refuses every request outside `open_paths` that lacks one of the service tokens (401 in the envelope)."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[str],
        service: str,
        open_paths: frozenset[str] = OPEN_PATHS,
        protected_prefixes: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.tokens = [t for t in tokens if t]
        self.service = service
        self.open_paths = open_paths
        # None: every path but the open ones; otherwise only paths under these prefixes need the token.
        self.protected_prefixes = tuple(protected_prefixes) if protected_prefixes is not None else None

    def _protected(self, path: str) -> bool:
        if path in self.open_paths:
            return False
        if self.protected_prefixes is None:
            return True
        return path.startswith(self.protected_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = bearer(scope["headers"])
        if token_matches(presented, self.tokens):
            await self.app(scope, receive, send)
            return
        code = "service_token_required" if presented is None else "invalid_service_token"
        message = (
            f"the {self.service} service answers only other platform services: send its service token as "
            "`Authorization: Bearer <token>` (clients reach the platform through the gateway)"
        )
        body = orjson.dumps(error_body(401, code, message))
        await _send_json(send, 401, body, [(b"www-authenticate", b'Bearer realm="llmops-internal"')])


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every HTTP response (keeps any the app set itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in SECURITY_HEADERS if h[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def require_tokens(tokens: Sequence[str | None], *, service: str, setting: str, dev_mode: bool) -> list[str]:
    """The configured tokens; without any, start only in dev mode (and say loudly that anyone may call)."""
    found = [t for t in tokens if t]
    if found:
        return found
    if dev_mode:
        log.warning(
            "%s accepts calls from anyone: %s is not set (dev mode only; never expose this port)", service, setting
        )
        return []
    raise MissingServiceToken(
        f"{service}: {setting} is not set. Internal services accept only the platform's own callers; set it "
        f"(make up generates one into .llmops/env), or set dev mode for a local experiment"
    )


def install_service_auth(
    app: ASGIApp, tokens: Sequence[str], *, service: str, protected_prefixes: Sequence[str] | None = None
) -> None:
    """Guard `app` (a FastAPI/Starlette app) with the service token; no tokens (dev mode) leaves it open."""
    if tokens:
        app.add_middleware(  # type: ignore[attr-defined]
            ServiceTokenMiddleware, tokens=list(tokens), service=service, protected_prefixes=protected_prefixes
        )
