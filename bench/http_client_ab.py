"""aiohttp vs httpx as the gateway's upstream client: client CPU per relayed request, p50/p99, in one run.

A faithful mini-relay: each request is what `services/gateway/upstream.py` and `stages/relay.py` do with the
deployment's answer: POST the body with per-request timeouts and headers to the FAKE upstream
(tests/support/fake_upstream.py, its own process), then read the whole answer bounded in 64 KiB chunks, or read the
SSE stream line by line (bounded) through `llmops_common.sse.SSEReader` and parse each event. Only the client's side
runs in this process, on uvloop like the gateway, so this process's CPU time over a phase, divided by the requests
it made, is the client library's cost per relayed request (the gateway's server side does not change with it).

Phases are closed loop at a fixed concurrency and interleaved (A B C A B C ...) so the neighbours' load falls on
every client alike; the figures to compare are the ratios. Run:
`python bench/http_client_ab.py --requests 3000 --concurrency 10 --rounds 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libs"))
from bench.common import percentile, versions, write_result
from llmops_common.sse import SSEReader
from tests.support.servers import free_port

LIMIT = 8 * 1024 * 1024  # as GATEWAY_MAX_RESPONSE_BYTES
WHOLE = orjson.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "ping"}]})
STREAM = orjson.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "ping"}], "stream": True})
HEADERS = {"content-type": "application/json", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}

OneCall = Callable[[bool], Awaitable[None]]


async def _bounded(lines: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """The relay's size bound over a stream's lines."""
    received = 0
    async for line in lines:
        received += len(line)
        if received > limit:
            raise ValueError("too large")
        yield line


async def _encoded(lines: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """httpx's str lines as the bytes SSEReader reads."""
    async for line in lines:
        yield line.encode()


async def _raw_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Lines of a byte stream, split on b"\\n" (what aiohttp's StreamReader iteration yields)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line + b"\n"
    if pending:
        yield pending


def start_fake_upstream(repo: Path, port: int, uds: str) -> subprocess.Popen[bytes]:
    """tests/support/fake_upstream.py's FakeUpstream in its own process, on 127.0.0.1:`port` and on the socket `uds`."""
    env = {**os.environ, "PYTHONPATH": f"{repo}:{repo / 'libs'}"}
    serve = (
        "import asyncio,sys; from tests.support.fake_upstream import FakeUpstream\n"
        "async def m():\n f = FakeUpstream(); s = await f.serve(int(sys.argv[1]))\n"
        " u = await asyncio.start_unix_server(f._handle, sys.argv[2])\n"
        " await asyncio.gather(s.serve_forever(), u.serve_forever())\nasyncio.run(m())"
    )
    return subprocess.Popen([sys.executable, "-c", serve, str(port), uds], cwd=repo, env=env)


class AiohttpClient:
    """upstream.py's pool and calls as they are today; over a Unix socket ("aiohttp-uds") as guardrails.py does with
    GATEWAY_GUARDRAILS_UDS."""

    def __init__(self, url: str, uds: str | None = None) -> None:
        self.name = "aiohttp-uds" if uds else "aiohttp"
        self.url = url
        connector: aiohttp.BaseConnector = (
            aiohttp.UnixConnector(path=uds, limit=0, keepalive_timeout=60)
            if uds
            else aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        )
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def call(self, stream: bool) -> None:
        timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120)
            if stream
            else aiohttp.ClientTimeout(total=120, sock_connect=5)
        )
        resp = await self.session.post(self.url, data=STREAM if stream else WHOLE, headers=HEADERS, timeout=timeout)
        try:
            if stream:
                async for data in SSEReader(_bounded(resp.content, LIMIT)):
                    orjson.loads(data)
            else:
                body = bytearray()
                async for chunk in resp.content.iter_chunked(65_536):
                    body += chunk
                orjson.loads(body)
        finally:
            resp.release()

    async def close(self) -> None:
        await self.session.close()


class HttpxClient:
    """httpx with a tuned pool: HTTP/1.1 only, no retries, unbounded connections, 60 s keep-alive; the stream
    read with `aiter_lines` (name "httpx") or with our own split of `aiter_raw` (name "httpx-raw")."""

    def __init__(self, url: str, raw_lines: bool) -> None:
        self.name = "httpx-raw" if raw_lines else "httpx"
        self.url = url
        self.raw_lines = raw_lines
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=60)
        transport = httpx.AsyncHTTPTransport(http1=True, http2=False, retries=0, limits=limits)
        self.client = httpx.AsyncClient(transport=transport, trust_env=False)
        self.stream_timeout = httpx.Timeout(connect=5, read=120, write=120, pool=None)
        self.whole_timeout = httpx.Timeout(120, connect=5)

    async def call(self, stream: bool) -> None:
        timeout = self.stream_timeout if stream else self.whole_timeout
        body = STREAM if stream else WHOLE
        req = self.client.build_request("POST", self.url, content=body, headers=HEADERS, timeout=timeout)
        resp = await self.client.send(req, stream=True)
        try:
            if stream:
                lines = _raw_lines(resp.aiter_raw()) if self.raw_lines else _encoded(resp.aiter_lines())
                async for data in SSEReader(_bounded(lines, LIMIT)):
                    orjson.loads(data)
            else:
                buf = bytearray()
                async for chunk in resp.aiter_raw(65_536):
                    buf += chunk
                orjson.loads(buf)
        finally:
            await resp.aclose()

    async def close(self) -> None:
        await self.client.aclose()


def server_cpu_s(pid: int) -> float:
    """The fake upstream's user + system CPU seconds so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def phase(call: OneCall, stream: bool, requests: int, concurrency: int, server: int) -> dict[str, Any]:
    """`requests` calls over `concurrency` workers; this process's CPU per call, the server's (pid `server`), and
    the calls' latencies."""
    latencies: list[float] = []
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await call(stream)
            latencies.append(time.perf_counter() - started)

    cpu0, wall0, server0 = time.process_time(), time.perf_counter(), server_cpu_s(server)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    served = server_cpu_s(server) - server0
    return {
        "cpu_us_per_request": round(cpu * 1e6 / len(latencies), 1),
        "server_cpu_us_per_request": round(served * 1e6 / len(latencies), 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "rps": round(len(latencies) / wall),
    }


async def run(url: str, uds: str, server: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every client, both modes, interleaved rounds; the medians per client and mode."""
    clients: list[AiohttpClient | HttpxClient] = [AiohttpClient(url), HttpxClient(url, False), HttpxClient(url, True)]
    clients.append(AiohttpClient("http://upstream/v1/chat/completions", uds))
    out: dict[str, Any] = {}
    try:
        for client in clients:  # warm: pools opened, code paths run once
            for stream in (False, True):
                await phase(client.call, stream, 200, args.concurrency, server)
        for mode, stream in (("whole", False), ("stream", True)):
            runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in clients}
            for _ in range(args.rounds):
                for client in clients:
                    runs[client.name].append(await phase(client.call, stream, args.requests, args.concurrency, server))
            out[mode] = {
                name: {
                    key: statistics.median(r[key] for r in phases)
                    for key in ("cpu_us_per_request", "server_cpu_us_per_request", "p50_ms", "p99_ms", "rps")
                }
                | {"cpu_phases": [r["cpu_us_per_request"] for r in phases]}
                for name, phases in runs.items()
            }
    finally:
        for client in clients:
            await client.close()
    return out


def summary(result: dict[str, Any], gateway_cpu_ms: float) -> str:
    """The markdown table: each client's cost, and what it would make of the gateway's CPU per request."""
    lines = [
        f"Load average before: {result['load_before']}, after: {result['load_after']}. {result['conditions']}",
        "",
        "| mode | client | client CPU µs / request (median) | vs aiohttp | gateway CPU / request if swapped* "
        "| server CPU µs / request | p50 ms | p99 ms | req/s | every phase (µs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, clients in result["modes"].items():
        base = clients["aiohttp"]["cpu_us_per_request"]
        for name, r in clients.items():
            delta = r["cpu_us_per_request"] - base
            swapped = (gateway_cpu_ms * 1000 + delta) / (gateway_cpu_ms * 1000)
            lines.append(
                f"| {mode} | {name} | {r['cpu_us_per_request']} | {r['cpu_us_per_request'] / base:.2f}x "
                f"| {swapped - 1:+.1%} | {r['server_cpu_us_per_request']} | {r['p50_ms']} | {r['p99_ms']} "
                f"| {r['rps']} | {r['cpu_phases']} |"
            )
    lines += [
        "",
        f"\\* the client's extra CPU added to the gateway's whole CPU per relayed request with aiohttp "
        f"({gateway_cpu_ms} ms, bench/results/gateway_cpu.md): the share of the gateway's per-request cost that "
        "the swap would add.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gateway-cpu-ms", type=float, default=0.906, help="the gateway's CPU/request today")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    port = free_port()
    folder = tempfile.TemporaryDirectory()
    uds = str(Path(folder.name) / "upstream.sock")
    fake = start_fake_upstream(repo, port, uds)
    load_before = [round(v, 2) for v in os.getloadavg()]
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        for _ in range(100):  # the fake upstream is up once it accepts a connection and its socket exists
            try:
                httpx.post(url, content=WHOLE, timeout=1)
                if Path(uds).exists():
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        if args.no_uvloop:
            modes = asyncio.run(run(url, uds, fake.pid, args))
        else:
            import uvloop

            modes = uvloop.run(run(url, uds, fake.pid, args))
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        folder.cleanup()
    result = {
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "conditions": (
            f"Closed loop, {args.concurrency} concurrent calls, {args.requests} requests per phase, {args.rounds} "
            f"interleaved rounds, {'asyncio' if args.no_uvloop else 'uvloop'}; fake upstream in its own process "
            "on TCP and on a Unix socket (its CPU in its own column); whole = 64 KiB bounded read + JSON parse, "
            "stream = 4 SSE lines bounded + SSEReader + JSON parse per event."
        ),
        "modes": modes,
        "versions": versions("aiohttp", "httpx", "httpcore", "h11", "anyio", "uvloop"),
    }
    write_result("http_client_ab", result, summary(result, args.gateway_cpu_ms))
    print(summary(result, args.gateway_cpu_ms))


if __name__ == "__main__":
    main()
