"""Test helpers: a trace event emitter (what the gateway writes), a fake gateway, and in-loop servers."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid schema-1 trace event; any field can be overridden."""
    event: dict[str, Any] = {
        "schema": 1,
        "request_id": "req_" + uuid.uuid4().hex[:24],
        "trace_id": uuid.uuid4().hex,
        "ts": time.time(),
        "team": "team-a",
        "project": "proj-a",
        "key_id": "key-a",
        "model": "smollm2-135m-instruct",
        "model_version": "1",
        "deployment": "default",
        "prompt_version": None,
        "endpoint": "chat",
        "status": 200,
        "error_code": None,
        "prompt_tokens": 12,
        "completion_tokens": 20,
        "cost_usd": 0.0001,
        "latency_ms": 120.0,
        "ttft_ms": 30.0,
        "stream": False,
        "guardrails": [],
        "retrieval": [],
        "prompt": [{"role": "user", "content": "What is the capital of France?"}],
        "response": "The capital of France is Paris.",
        "mean_logprob": -0.4,
    }
    event.update(overrides)
    return event


async def emit(redis: Redis, stream_key: str, events: list[dict[str, Any]], maxlen: int = 1_000_000) -> list[bytes]:
    """XADD events the way the gateway does (one 'event' field, approximate MAXLEN trim)."""
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream_key, {"event": orjson.dumps(event)}, maxlen=maxlen, approximate=True)
        return await pipe.execute()


def fake_gateway(keys: dict[str, dict[str, Any]]) -> FastAPI:
    """A fake gateway that only answers GET /v1/me for a fixed key map; counts its calls."""
    app = FastAPI()
    app.state.calls = 0

    @app.get("/v1/me")
    async def me(request: Request) -> JSONResponse:
        app.state.calls += 1
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if key not in keys:
            return JSONResponse({"error": {"code": "invalid_api_key", "message": "bad key"}}, status_code=401)
        return JSONResponse(keys[key])

    return app


def free_port() -> int:
    """An ephemeral port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn (lifespan on) on an ephemeral port in this loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surface the startup error
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)
