"""A graceful drain for a uvicorn worker that is one of several behind a port (a rolling restart).

Told to stop (SIGTERM), uvicorn closes its listener and, at once, every idle keep-alive connection. A client that
sent its next request on such a connection a moment earlier gets the connection closed under it (a ReadError,
never answered: a non-idempotent POST that no client library may retry). The drain puts a window first: for
`seconds` the worker keeps serving as before, except that /readyz answers 503 (a load balancer stops sending) and
every response carries `Connection: close`, so each busy client leaves at a request boundary and reconnects to
another worker. Only then does uvicorn's own shutdown run (what is still idle then was idle the whole window).
A second SIGTERM during the window stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("llmops.drain")

Scope = dict[str, Any]
Message = dict[str, Any]


class Drain:
    """The drain state of one worker process, and the ASGI middleware that applies it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    def install(self) -> bool:
        """Wrap the SIGTERM handler uvicorn installed (call from the lifespan's startup, in the main thread).
        False when there is nothing to do: no window, or not the main thread (signals cannot be caught there)."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        original = signal.getsignal(signal.SIGTERM)
        if not callable(original):
            return False  # not under uvicorn (a test client): the default action is left alone
        loop = asyncio.get_running_loop()

        def on_term(sig: int, frame: FrameType | None) -> None:
            if self.draining:
                original(sig, frame)  # asked twice: stop now
                return
            self.draining = True
            log.info("draining before shutdown", extra={"seconds": self.seconds})
            loop.call_soon_threadsafe(loop.call_later, self.seconds, original, sig, None)

        signal.signal(signal.SIGTERM, on_term)
        return True


class DrainMiddleware:
    """While draining: /readyz is 503, and every response closes its connection."""

    def __init__(self, app: Any, drain: Drain, ready_path: str = "/readyz") -> None:
        self.app, self.drain, self.ready_path = app, drain, ready_path

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.drain.draining:
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.ready_path:
            body = b'{"status":"draining"}'
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
