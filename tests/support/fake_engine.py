"""A FAKE OpenAI-compatible engine that records what the gateway forwards (bodies and headers), for the
gateway's request-path tests. Not a model: `answer_bytes` makes it answer that much text (an engine told to
return huge logprobs), `completion_tokens` makes it report more usage than it was allowed, `mean_logprob` is
what it reports in usage when a request asks for it (as the inference service does).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.fake_guardrails import serve_in_thread


@dataclass
class FakeEngine:
    """What it received, and how it will answer."""

    requests: list[dict[str, Any]] = field(default_factory=list)  # {"body", "authorization"}
    answer_bytes: int = 0
    completion_tokens: int | None = None
    mean_logprob: float = -0.25
    url: str = ""

    def _text(self) -> str:
        return "x" * self.answer_bytes if self.answer_bytes else "pong"

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        bound = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        completion = self.completion_tokens if self.completion_tokens is not None else min(2, bound)
        usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}
        if body.get("mean_logprob"):
            usage["mean_logprob"] = self.mean_logprob
        return usage

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        usage = self._usage(body)
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": self._text()}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        text = self._text()
        for start in range(0, len(text), 1000):
            chunk = {"choices": [{"index": 0, "delta": {"content": text[start : start + 1000]}}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    def app(self) -> web.Application:
        """The aiohttp application (chat and text completions answer alike)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        return app


@contextlib.contextmanager
def fake_engine_in_thread() -> Iterator[FakeEngine]:
    """Run a FakeEngine on a free port in its own thread; `url` ends in /v1."""
    fake = FakeEngine()
    with serve_in_thread(fake.app()) as url:
        fake.url = url + "/v1"
        yield fake
