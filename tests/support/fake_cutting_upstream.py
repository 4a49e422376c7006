"""A FAKE OpenAI-compatible upstream that dies the ways an engine does (fault injection only, not a model).

Modes (set `mode` between requests):
- "cut": a chunked SSE answer whose connection is aborted after the first event (an engine killed mid-stream);
- "cut_unframed": the same without chunked framing (`connection: close`, no length): the close looks like an
  orderly end, only the missing `[DONE]` tells;
- "stall": the first event, then nothing, connection held open (a hung engine);
- "close_before_reply": the request is read, then the connection is closed with no reply (killed before answering);
- "slow": a whole, valid answer after `delay_s` (a request in flight while something else fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator

from tests.support.fake_upstream import serve_in_thread

FIRST_EVENT = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"fake-model",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"par"},"finish_reason":null}]}\n\n'
)
ANSWER = json.dumps(
    {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
).encode()
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class CuttingUpstream:
    """Raw asyncio HTTP/1.1 server; `requests` counts what reached it."""

    def __init__(self) -> None:
        self.mode = "cut"
        self.delay_s = 1.0
        self.requests = 0
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def wait_for_requests(self, count: int, timeout_s: float = 30.0) -> None:
        """Block (from the test's thread) until `count` requests have reached this upstream."""
        deadline = time.monotonic() + timeout_s
        while self.requests < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.requests} of {count} requests reached the upstream in {timeout_s} s")
            time.sleep(0.01)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            self.requests += 1
            if self.mode == "close_before_reply":
                return
            if self.mode == "slow":
                await asyncio.sleep(self.delay_s)
                head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                writer.write(head % len(ANSWER) + ANSWER)
                await writer.drain()
                return
            if self.mode == "cut_unframed":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                writer.write(FIRST_EVENT)
            else:
                writer.write(CHUNKED_HEAD)
                writer.write(b"%x\r\n%s\r\n" % (len(FIRST_EVENT), FIRST_EVENT))
            await writer.drain()
            await asyncio.sleep(0.1)
            if self.mode == "stall":
                await asyncio.sleep(3600)
        except (asyncio.IncompleteReadError, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            if self.mode == "cut":
                writer.transport.abort()  # no terminating chunk: the way a killed process leaves the socket
            else:
                writer.close()

    async def serve(self, port: int = 0) -> asyncio.Server:
        """Start listening on 127.0.0.1."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):  # a stalled handler sleeps for an hour
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.contextmanager
def cutting_upstream_in_thread() -> Iterator[CuttingUpstream]:
    """Run a CuttingUpstream on its own event loop thread."""
    with serve_in_thread(CuttingUpstream()) as fake:
        yield fake
