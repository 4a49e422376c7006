"""A bearer token on the gateway's /metrics: its series name every team and what each one spent.

The gateway is the platform's public door, so unlike the internal services its /metrics is reachable by clients;
Prometheus sends the token (`authorization: {credentials_file: ...}` in its scrape config).
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from llmops_common.errors import error_body
from llmops_common.service_auth import SECURITY_HEADERS, bearer, token_matches

log = logging.getLogger("gateway.metrics_auth")
METRICS_PATH = "/metrics"


class MetricsTokenMiddleware:
    """401 on /metrics without `Authorization: Bearer <GATEWAY_METRICS_TOKEN>`; every other path passes."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.tokens = [token]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        if token_matches(bearer(scope["headers"]), self.tokens):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(
            error_body(
                401,
                "metrics_token_required",
                "the gateway's /metrics needs `Authorization: Bearer <GATEWAY_METRICS_TOKEN>` (it lists every "
                "team's spend); configure the token in Prometheus' scrape config",
            )
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="llmops-metrics"'),
            *SECURITY_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def install_metrics_auth(app: ASGIApp, token: str | None, *, dev_mode: bool) -> None:
    """Guard /metrics when a token is set; without one it stays open (say so outside dev mode)."""
    if token:
        app.add_middleware(MetricsTokenMiddleware, token=token)  # type: ignore[attr-defined]
    elif not dev_mode:
        log.warning(
            "GATEWAY_METRICS_TOKEN is not set: /metrics (every team's spend) is open to anyone who reaches the "
            "gateway; set it and give Prometheus the token"
        )
