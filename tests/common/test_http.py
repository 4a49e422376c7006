"""llmops_common.http: the platform's one HTTP client (aiohttp) in its two faces, against a real aiohttp server in
its own thread (so the blocking face can also be called from a thread that runs an event loop)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from llmops_common.http import AsyncHTTP, BlockingHTTP, HTTPError, StatusError
from tests.support.fake_guardrails import serve_in_thread


class Server:
    """Echoes JSON bodies with the headers it saw; /stall answers only after 2 s; /sse streams two events."""

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen = {"body": body, "auth": request.headers.get("authorization"), "query": dict(request.query)}
        return web.json_response(seen, status=int(request.query.get("status", "200")))

    async def stall(self, request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # far past the client's 0.3 s; bounded, so the server can shut down
        return web.json_response({})

    async def sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\n')
        return resp

    async def moved(self, request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"location": "/echo"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_get("/stall", self.stall)
        app.router.add_post("/sse", self.sse)
        app.router.add_get("/moved", self.moved)
        return app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(Server().app()) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_async_face_sends_json_base_url_and_headers_and_reads_the_whole_answer(server: str) -> None:
    http = AsyncHTTP(server, headers={"authorization": "Bearer a"}, timeout_s=5)
    try:
        reply = await http.post("/echo", json={"x": 1}, params={"q": "v"})
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
        assert reply.json() == {"body": {"x": 1}, "auth": "Bearer a", "query": {"q": "v"}}
        over = await http.get("/echo", headers={"authorization": "Bearer b"})  # the call's header wins
        assert over.json()["auth"] == "Bearer b"
        refused = await http.get("/echo?status=409")
        with pytest.raises(StatusError) as err:
            refused.raise_for_status()
        assert err.value.reply.status_code == 409 and isinstance(err.value, HTTPError)
        moved = await http.get("/moved")  # a redirect is the answer (as httpx), not followed
        assert moved.status_code == 307 and moved.headers["location"] == "/echo"
    finally:
        await http.aclose()


async def test_async_face_times_out_between_bytes_and_reports_a_refused_connect(server: str) -> None:
    http = AsyncHTTP(server, timeout_s=0.3)
    with pytest.raises(HTTPError):
        await http.get("/stall")
    with pytest.raises(HTTPError):
        await http.get(f"http://127.0.0.1:{closed_port()}/echo")
    await http.aclose()


async def test_async_face_streams_lines(server: str) -> None:
    http = AsyncHTTP(server)
    async with http.stream("POST", "/sse", json={}) as resp:
        lines = [line async for line in resp.content if line.strip()]
    assert lines == [b'data: {"n": 1}\n', b'data: {"n": 2}\n', b"data: [DONE]\n"]
    await http.aclose()


def test_blocking_face_is_pooled_and_thread_safe(server: str) -> None:
    results: list[int] = []
    with BlockingHTTP(server, timeout_s=5) as http:

        def call(n: int) -> None:
            results.append(http.post("/echo", json={"n": n}).json()["body"]["n"])

        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == list(range(8))
        with pytest.raises(HTTPError):
            http.get(f"http://127.0.0.1:{closed_port()}/echo")


async def test_blocking_face_works_from_a_thread_running_a_loop(server: str) -> None:
    """The guardrails watcher, RAG ingestion: sync code reached from a thread that has an event loop."""
    with BlockingHTTP(server) as http:
        assert http.get("/echo").status_code == 200
