"""A FAKE gateway for the RAG tests: /v1/me, /v1/usage/admit and /v1/chat/completions, with switchable failures.

It is not the platform's gateway: it stands in for it so the RAG service can be tested alone. With
`upstream` set it forwards chat calls to a real OpenAI-compatible server (the real inference service).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

KEYS = {"key-team-a": "team-a", "key-team-b": "team-b", "key-public": "public"}
# What the real gateway answers when a key is out of rate, budget or models (mode -> status, code).
REFUSALS = {
    "limited": (429, "rate_limited"),
    "budget": (402, "budget_exceeded"),
    "forbidden": (403, "model_not_allowed"),
}


class FakeGatewayState:
    """What the fake does and what it saw."""

    def __init__(self) -> None:
        # ok | down (503 on chat) | limited (429) | budget (402) | forbidden (403) | truncated (cut at max_tokens)
        self.mode = "ok"
        self.chat_calls: list[dict[str, Any]] = []
        self.chat_keys: list[str] = []
        self.chat_service_tokens: list[str | None] = []  # x-llmops-service-token of each chat call
        self.me_calls = 0
        # What POST /v1/usage/admit answers: ok (204), or a refusal mode of REFUSALS, or "missing" (404: an old gateway)
        self.admit_mode = "ok"
        self.admit_calls: list[tuple[str, str]] = []  # (key, kind)
        self.admit_tokens: list[tuple[str, int]] = []  # (kind, embedded tokens reported)
        self.admit_refuse_kinds: set[str] = set()  # refusal modes apply to these kinds only (empty: to all)
        self.upstream: str | None = None


def build_fake_gateway(state: FakeGatewayState) -> FastAPI:
    """The fake's routes."""
    app = FastAPI()

    def key_of(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        key = header[7:] if header.lower().startswith("bearer ") else ""
        return key if key in KEYS else None

    def unauthorized() -> JSONResponse:
        body = {"error": {"message": "invalid key", "type": "authentication_error", "code": "invalid_api_key"}}
        return JSONResponse(body, status_code=401)

    @app.get("/v1/me")
    async def me(request: Request) -> Any:
        state.me_calls += 1
        key = key_of(request)
        if key is None:
            return unauthorized()
        return {"key_id": f"id-{key}", "team": KEYS[key], "project": "p", "allowed_models": ["smollm2-135m-instruct"]}

    @app.post("/v1/usage/admit")
    async def admit(request: Request) -> Any:
        key = key_of(request)
        if key is None:
            return unauthorized()
        body = await request.json()
        state.admit_calls.append((key, body["kind"]))
        state.admit_tokens.append((body["kind"], int(body.get("tokens", 0))))
        if state.admit_mode == "missing":
            return JSONResponse({"error": {"message": "not found", "code": "not_found"}}, status_code=404)
        if state.admit_mode in REFUSALS and (not state.admit_refuse_kinds or body["kind"] in state.admit_refuse_kinds):
            status, code = REFUSALS[state.admit_mode]
            err = {"error": {"message": f"refused: {code}", "type": "invalid_request_error", "code": code}}
            return JSONResponse(err, status_code=status, headers={"retry-after": "7"} if status == 429 else None)
        return Response(status_code=204)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        key = key_of(request)
        if key is None:
            return unauthorized()
        body = await request.json()
        state.chat_calls.append(body)
        state.chat_keys.append(key)
        state.chat_service_tokens.append(request.headers.get("x-llmops-service-token"))
        if state.mode == "down":
            err = {"error": {"message": "no healthy deployment", "type": "api_error", "code": "upstream_unavailable"}}
            return JSONResponse(err, status_code=503)
        if state.mode in REFUSALS:
            status, code = REFUSALS[state.mode]
            err = {"error": {"message": f"refused: {code}", "type": "invalid_request_error", "code": code}}
            return JSONResponse(err, status_code=status, headers={"retry-after": "7"} if status == 429 else None)
        if state.upstream:
            async with httpx.AsyncClient(timeout=120) as client:
                resp = await client.post(state.upstream + "/v1/chat/completions", json=body)
            return Response(
                resp.content,
                status_code=resp.status_code,
                media_type="application/json",
                headers={"x-model-version": resp.headers.get("x-model-version", "")},
            )
        text = "Cats eat fish [1]."
        finish = "length" if state.mode == "truncated" else "stop"
        if body.get("stream"):
            return StreamingResponse(_stream(text, finish), media_type="text/event-stream")
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": f"{body['model']}@7",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56},
        }

    return app


async def _stream(text: str, finish: str) -> Any:
    for piece in text.split(" "):
        chunk = {"choices": [{"index": 0, "delta": {"content": piece + " "}}], "system_fingerprint": "m@7"}
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    yield b"data: " + orjson.dumps(last) + b"\n\n"
    usage = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 6, "total_tokens": 56}}
    yield b"data: " + orjson.dumps(usage) + b"\n\n"
    yield b"data: [DONE]\n\n"


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free port in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
