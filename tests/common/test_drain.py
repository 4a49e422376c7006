"""The shutdown drain (libs/llmops_common/drain.py): SIGTERM starts a window in which every response closes its
connection and /readyz is 503; the server's own handler runs once the window is over (at once on a second
SIGTERM). tests/reliability/test_rolling_restart.py shows what it is for: a rolling restart that loses nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from types import FrameType

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from llmops_common.drain import Drain, DrainMiddleware


def app_with(drain: Drain) -> FastAPI:
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/echo")
    async def echo() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(DrainMiddleware, drain=drain)
    return app


def test_before_the_drain_responses_keep_their_connection() -> None:
    client = TestClient(app_with(Drain(3)))
    assert client.get("/readyz").status_code == 200
    response = client.post("/v1/echo")
    assert response.status_code == 200 and "connection" not in response.headers


def test_while_draining_every_response_closes_its_connection_and_readiness_fails() -> None:
    drain = Drain(3)
    client = TestClient(app_with(drain))
    drain.draining = True
    response = client.post("/v1/echo")
    assert response.status_code == 200 and response.json() == {"ok": True}  # still served
    assert response.headers["connection"] == "close"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"status": "draining"}


def test_no_window_installs_nothing() -> None:
    assert Drain(0).install() is False


@pytest.fixture
def term_handler() -> Iterator[list[float]]:
    """A stand-in for uvicorn's SIGTERM handler, recording when it ran; the real handler is put back after."""
    calls: list[float] = []

    def handler(sig: int, frame: FrameType | None) -> None:
        calls.append(time.monotonic())

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_runs_the_servers_handler_only_after_the_window(term_handler: list[float]) -> None:
    async def scenario() -> float:
        drain = Drain(0.3)
        assert drain.install() is True
        sent = time.monotonic()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert drain.draining and term_handler == []  # draining, not stopping yet
        deadline = time.monotonic() + 10
        while not term_handler and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return sent

    sent = asyncio.run(scenario())
    assert len(term_handler) == 1 and term_handler[0] - sent >= 0.3


def test_a_second_sigterm_stops_at_once(term_handler: list[float]) -> None:
    async def scenario() -> None:
        drain = Drain(60)
        drain.install()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert term_handler == []
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert len(term_handler) == 1

    asyncio.run(scenario())
