"""A FAKE OpenAI-compatible upstream, for measuring the gateway's own cost and for injecting faults.

It is a raw asyncio HTTP/1.1 server (no framework) so it is never the bottleneck. It is not a model:
tests that show real behaviour use the real inference service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Protocol, TypeVar

_CHAT = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 0,
    "model": "fake-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
}
_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"fake-model",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"po"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"fake-model",'
    b'"choices":[{"index":0,"delta":{"content":"ng"},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"fake-model","choices":[],'
    b'"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}\n\n'
    b"data: [DONE]\n\n"
)


class FakeUpstream:
    """Answers every POST with a fixed completion; `fail_with` makes it answer an error status instead."""

    def __init__(self) -> None:
        self.fail_with: int | None = None
        self.requests = 0
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._body = json.dumps(_CHAT).encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip())
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                if self.fail_with:
                    payload = b'{"error":{"message":"injected fault","type":"server_error","code":"fault"}}'
                    writer.write(
                        b"HTTP/1.1 %d Injected\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (self.fail_with, len(payload), payload)
                    )
                elif b'"stream":true' in body:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(_STREAM), _STREAM)
                    )
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(self._body), self._body)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def shutdown(self, server: asyncio.Server) -> None:
        """Stop listening and close every open connection (no leaked sockets)."""
        server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0.05)
        await server.wait_closed()

    async def serve(self, port: int = 0) -> asyncio.Server:
        """Start listening on 127.0.0.1."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        return server


class _ThreadServed(Protocol):
    """A raw asyncio fake: `serve()` starts listening, `shutdown(server)` closes it and its connections."""

    async def serve(self, port: int = 0) -> asyncio.Server: ...

    async def shutdown(self, server: asyncio.Server) -> None: ...


_Fake = TypeVar("_Fake", bound=_ThreadServed)


@contextlib.contextmanager
def serve_in_thread(fake: _Fake) -> Iterator[_Fake]:
    """Run a raw asyncio fake on its own event loop thread (so a test's own loop stays free)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder["server"] = loop.run_until_complete(fake.serve())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.shutdown(holder["server"]), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def fake_upstream_in_thread() -> Iterator[FakeUpstream]:
    """Run a FakeUpstream on its own event loop thread (so a test's own loop stays free)."""
    with serve_in_thread(FakeUpstream()) as fake:
        yield fake
