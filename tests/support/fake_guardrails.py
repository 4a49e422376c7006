"""A FAKE guardrails service implementing the per-request contract (COMMON.md / issue 13 items 2-3), for the
gateway's tests: it records every call, and decides with three fixed rules, not a model.

- "ignore all previous instructions" (any case) in any message -> block (findings carry the message index);
- an e-mail address -> redact it to <EMAIL_1>;
- more than `max_messages` messages -> 413 too_many_messages.

Tool messages, and texts the gateway marks as trusted retrieved context (`"context": true`), are checked in
`content` mode, every other role in `input` mode (recorded in `modes`), as the default policy's roles map says.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_ATTACK = re.compile(r"ignore all previous instructions", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ORDER = ["allow", "flag", "redact", "block"]


@dataclass
class FakeGuardrails:
    """The fake's state: what it was asked, and how."""

    max_messages: int = 1000
    calls: list[dict[str, Any]] = field(default_factory=list)  # {"path", "body", "authorization"}
    modes: list[str] = field(default_factory=list)
    url: str = ""

    def input_calls(self) -> list[dict[str, Any]]:
        """The bodies of every POST /v1/check/input."""
        return [c["body"] for c in self.calls if c["path"] == "/v1/check/input"]

    def _check(self, index: int, text: str) -> tuple[str, str | None, list[dict[str, Any]]]:
        if match := _ATTACK.search(text):
            finding = {
                "detector": "injection",
                "category": "prompt_injection",
                "start": match.start(),
                "end": match.end(),
                "score": 1.0,
                "reason": "instruction override",
                "action": "block",
                "message": index,
            }
            return "block", None, [finding]
        if _EMAIL.search(text):
            finding = {
                "detector": "pii",
                "category": "EMAIL",
                "start": 0,
                "end": 0,
                "score": 1.0,
                "reason": "e-mail address",
                "action": "redact",
                "message": index,
            }
            return "redact", _EMAIL.sub("<EMAIL_1>", text), [finding]
        return "allow", None, []

    async def _input(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({"path": request.path, "body": body, "authorization": request.headers.get("authorization")})
        if "messages" not in body:  # the single-text form (outputs, and old callers)
            verdict = self._check(0, body["text"])
            return web.json_response(self._reply(*verdict))
        messages = body["messages"]
        if len(messages) > self.max_messages:
            return web.json_response(
                {"error": {"code": "too_many_messages", "message": f"at most {self.max_messages} messages"}},
                status=413,
            )
        results: list[dict[str, Any]] = []
        findings: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            self.modes.append("content" if message["role"] == "tool" or message.get("context") else "input")
            decision, text, found = self._check(i, message["content"])
            results.append({"index": i, "decision": decision, "text": text})
            findings += found
        decision = max((str(r["decision"]) for r in results), key=_ORDER.index, default="allow")
        return web.json_response(self._reply(decision, None, findings) | {"messages": results})

    @staticmethod
    def _reply(decision: str, text: str | None, findings: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "decision": decision,
            "text": text,
            "findings": findings,
            "policy": "fake",
            "fail_mode": "closed",
            "timeout_ms": 2000,
            "errors": [],
            "latency_ms": 0.1,
        }

    async def _policy(self, request: web.Request) -> web.Response:
        self.calls.append({"path": request.path, "body": None, "authorization": request.headers.get("authorization")})
        return web.json_response({"team": request.match_info["team"], "policy": {}, "fail_mode": "closed"})

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/check/input", self._input)
        app.router.add_post("/v1/check/output", self._input)
        app.router.add_get("/v1/policies/{team}", self._policy)
        return app


@contextlib.contextmanager
def fake_guardrails_in_thread() -> Iterator[FakeGuardrails]:
    """Run a FakeGuardrails on 127.0.0.1 (a free port) in its own event loop thread."""
    fake = FakeGuardrails()
    with serve_in_thread(fake.app()) as url:
        fake.url = url
        yield fake


@contextlib.contextmanager
def serve_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on a free port from a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
