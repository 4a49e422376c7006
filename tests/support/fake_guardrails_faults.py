"""A FAKE guardrails service for fault tests: the FakeGuardrails rules (tests/support/fake_guardrails.py), a
fail mode per team, a check delay the test sets (slow guardrails), and a server the test can stop and start
again on the same port (guardrails down, then back). Not the real service: only its contract."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.fake_guardrails import FakeGuardrails
from tests.support.servers import free_port


class SlowFakeGuardrails(FakeGuardrails):
    """FakeGuardrails whose checks first sleep `delay_s`, and whose policies say each team's fail mode."""

    def __init__(self, fail_modes: dict[str, str], timeout_ms: int) -> None:
        super().__init__()
        self.fail_modes = fail_modes
        self.timeout_ms = timeout_ms
        self.delay_s = 0.0

    async def _input(self, request: web.Request) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await super()._input(request)

    async def _policy(self, request: web.Request) -> web.Response:
        team = request.match_info["team"]
        mode = self.fail_modes.get(team, "closed")
        return web.json_response({"team": team, "policy": {}, "fail_mode": mode, "timeout_ms": self.timeout_ms})


class StoppableServer:
    """Serves an aiohttp app on one fixed port from a thread; `stop()` closes the port, `start()` reopens it."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self.make_app = make_app  # a fresh application per start: one cannot be set up twice
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.make_app(), access_log=None, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    def start(self) -> None:
        self._run(self._start())

    def stop(self) -> None:
        if self.runner is not None:
            self._run(self.runner.cleanup())
            self.runner = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
