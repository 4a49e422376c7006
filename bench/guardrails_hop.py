"""The gateway's hop to the guardrails service: TCP vs a Unix socket (GATEWAY_GUARDRAILS_UDS), in one run.

Three gateways in front of the same FAKE upstream (bench/gateway_overhead.py's machinery): without guardrails, with
the real guardrails service over TCP (as `make up` runs it), and with a second, identical guardrails service listening
on a Unix socket only (uvicorn --uds). Each guarded request makes the two calls `make up` makes (one input check,
one output check). Per system, interleaved over rounds: closed-loop saturation (answered req/s), then a fixed rate
well below saturation for the server CPU per request (gateway + its guardrails process, /proc) and p50 latency.
(At saturation a guarded gateway also refuses what waited past the guardrails' time budget: counted as errors.)
Issue 17's targets: guardrails-on saturation >= 60 % of guardrails-off, guardrails add <= 3 ms p50.
Run: `python bench/guardrails_hop.py --seconds 8 --rounds 3`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentile, versions, write_result
from bench.gateway_cpu import cpu_seconds
from bench.gateway_overhead import BODY, GUARDRAILS_TOKEN, _key, _routes, start_fake_upstream
from bench.loadgen import build_request, closed_loop, fixed_rate
from bench.procstats import tree_pids
from tests.support.servers import REPO, free_port, server_process, uvicorn_process

SYSTEMS = ("off", "tcp", "uds")  # guardrails off; on over TCP; on over the Unix socket


def _ready_over_socket(path: str, timeout_s: float = 120.0) -> None:
    """Wait until the service behind the Unix socket answers /readyz with 200."""

    async def probe() -> bool:
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as session,
                session.get("http://guardrails/readyz") as resp,
            ):
                return resp.status == 200
        except (aiohttp.ClientError, OSError):
            return False

    until = time.monotonic() + timeout_s
    while not asyncio.run(probe()):
        if time.monotonic() > until:
            raise TimeoutError(f"guardrails on {path} not ready after {timeout_s:g} s")
        time.sleep(0.5)


@contextmanager
def guardrails_on_socket(env: dict[str, str], path: str, log: Path) -> Iterator[int]:
    """The guardrails service listening on the Unix socket `path` only; yields its pid."""
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'libs'}", **env}
    cmd = [sys.executable, "-m", "uvicorn", "services.guardrails.app:create_app", "--factory", "--uds", path]
    with server_process([*cmd, "--log-level", "warning"], log, env=full_env) as proc:
        _ready_over_socket(path)
        yield proc.pid


async def phases(
    ports: dict[str, int], key: str, seconds: float, rounds: int, connections: int, rate: float
) -> dict[str, Any]:
    """Interleaved rounds of saturation (with CPU per request) and fixed-rate latency for every system."""
    reqs = {
        name: build_request("127.0.0.1", port, "/v1/chat/completions", BODY, {"Authorization": f"Bearer {key}"})
        for name, port in ports.items()
    }
    for name, port in ports.items():  # warm: pools, the Lua script cache, the detectors
        await fixed_rate("127.0.0.1", port, reqs[name], 10, 50, 2)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
    for _ in range(rounds):
        for name, port in ports.items():
            sat = await closed_loop("127.0.0.1", port, reqs[name], connections, seconds)
            # CPU per request at a fixed rate far below saturation: every request answered, none queued past the
            # guardrails' time budget (at saturation the refusals would skew it)
            before = sum(cpu_seconds(p) for p in PIDS[name])
            low = await fixed_rate("127.0.0.1", port, reqs[name], 10, rate, seconds)
            spent = sum(cpu_seconds(p) for p in PIDS[name]) - before
            runs[name].append(
                {
                    "rps": sat.statuses.get("200", 0) / seconds,
                    "errors": sat.errors + low.errors,
                    "cpu_ms_per_request": spent * 1000 / max(1, len(low.latencies) - low.errors),
                    "p50_ms": percentile(low.latencies, 50) * 1000,
                }
            )
    return {
        name: {k: round(statistics.median(r[k] for r in rs), 3) for k in ("rps", "cpu_ms_per_request", "p50_ms")}
        | {"errors": sum(r["errors"] for r in rs), "rps_rounds": [round(r["rps"], 1) for r in rs]}
        for name, rs in runs.items()
    }


PIDS: dict[str, list[int]] = {}


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table and the ratios against issue 17's targets."""
    s = result["systems"]
    off = s["off"]
    lines = [
        f"Load average before: {result['load_before']}, after: {result['load_after']}. {result['conditions']}",
        "",
        "| guardrails | saturation req/s (median) | vs off | CPU ms / request (gateway + guardrails) | "
        f"p50 ms at {result['rate']:g} req/s | added p50 ms | every round (req/s) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in SYSTEMS:
        r = s[name]
        added = round(r["p50_ms"] - off["p50_ms"], 3) if name != "off" else "-"
        lines.append(
            f"| {name} | {r['rps']} | {r['rps'] / off['rps']:.0%} | {r['cpu_ms_per_request']} | "
            f"{r['p50_ms']} | {added} | {r['rps_rounds']} | {r['errors']} |"
        )
    lines += [
        "",
        f"UDS over TCP: saturation {s['uds']['rps'] / s['tcp']['rps']:.2f}x, CPU per request "
        f"{s['uds']['cpu_ms_per_request'] / s['tcp']['cpu_ms_per_request']:.2f}x. Targets (issue 17): guardrails-on "
        "saturation >= 60 % of off, added p50 <= 3 ms.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each saturation phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10, help="closed-loop connections (saturation)")
    parser.add_argument("--rate", type=float, default=50.0, help="req/s of the fixed-rate phase (CPU, p50)")
    parser.add_argument("--note", default="", help="what ran beside, for the results file")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    upstream_port = free_port()
    fake = start_fake_upstream(repo, upstream_port)
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        try:
            gw = {
                "GATEWAY_ADMIN_KEY": "bench-admin",
                "GATEWAY_ROUTES_FILE": str(_routes(folder, upstream_port)),
                "GATEWAY_REDIS_PREFIX": "bench:hop",
                "GATEWAY_EVENTS_STREAM": "bench:hop:events",
                "GATEWAY_LOG_LEVEL": "WARNING",
            }
            guard = {
                "GUARDRAILS_SERVICE_TOKEN": GUARDRAILS_TOKEN,
                "GUARDRAILS_VERDICT_CACHE_SIZE": "0",  # every real prompt differs; the bench sends one text
                "GUARDRAILS_LOG_LEVEL": "WARNING",
                "HF_HUB_OFFLINE": "1",
            }
            app = "services.guardrails.app:create_app"
            tcp_url, tcp_proc = stack.enter_context(uvicorn_process(app, guard, log_path=folder / "guard_tcp.log"))
            sock = str(folder / "guardrails.sock")
            uds_pid = stack.enter_context(guardrails_on_socket(guard, sock, folder / "guard_uds.log"))
            on = {"GATEWAY_GUARDRAILS_TOKEN": GUARDRAILS_TOKEN}
            envs = {
                "off": gw,
                "tcp": {**gw, **on, "GATEWAY_GUARDRAILS_URL": tcp_url},
                "uds": {**gw, **on, "GATEWAY_GUARDRAILS_URL": "http://guardrails", "GATEWAY_GUARDRAILS_UDS": sock},
            }
            guard_pids = {"off": [], "tcp": tree_pids(tcp_proc.pid), "uds": tree_pids(uds_pid)}
            ports = {}
            for name in SYSTEMS:
                url, proc = stack.enter_context(
                    uvicorn_process("services.gateway.app:create_app", envs[name], log_path=folder / f"{name}.log")
                )
                ports[name] = int(url.rsplit(":", 1)[1])
                PIDS[name] = tree_pids(proc.pid) + guard_pids[name]
            key = _key(f"http://127.0.0.1:{ports['off']}")  # one Redis: the key serves every gateway
            systems = asyncio.run(phases(ports, key, args.seconds, args.rounds, args.connections, args.rate))
        finally:
            fake.terminate()
            import redis

            client = redis.Redis()
            for k in client.scan_iter(match="bench:hop*", count=1000):
                client.delete(k)
    result = {
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "conditions": (
            f"1 uvicorn worker per gateway and per guardrails service; closed loop at {args.connections} "
            f"connections, {args.seconds:g} s per phase, {args.rounds} interleaved rounds (median), each followed by "
            f"{args.seconds:g} s at {args.rate:g} req/s over 10 connections for CPU per request and p50; in-repo "
            "generator (bench/loadgen.py) on the same cores; the shipped default policy, verdict cache off; fake "
            "upstream. " + args.note
        ),
        "rate": args.rate,
        "systems": systems,
        "versions": versions("fastapi", "uvicorn", "uvloop", "aiohttp"),
    }
    write_result("guardrails_hop", result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
