"""The gateway's CPU per request on the no-guardrails path, and where it goes (py-spy).

CPU per request = the gateway process's CPU time (user + system, /proc) spent during a fixed-rate phase, divided by
the requests it answered. Unlike latency or saturation it barely moves with the neighbours' load on a shared machine,
so it is the figure that compares a change before and after. The fixed rate (`hey`, or the in-repo generator when
hey is not installed) is well below saturation: the gateway is measured doing work, not queueing.

With --profile, py-spy samples the gateway during a second phase and writes the collapsed stacks
(bench/results/gateway_profile.collapsed) and an SVG flame graph (bench/results/gateway_profile.svg); py-spy is
taken from PATH or the peers' throw-away venv (bench/gateway_peers.py), never from the project's own venv.
Run: `python bench/gateway_cpu.py --rate 200 --seconds 10 [--workers 1] [--profile]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import extgen, gateway_flamegraph, gateway_peers
from bench.common import RESULTS, write_result
from bench.gateway_overhead import BODY, _key, _routes, start_fake_upstream
from bench.loadgen import build_request, fixed_rate
from bench.procstats import tree_pids
from tests.support.servers import free_port, server_process, wait_ready


def gateway_env(folder: Path, upstream_port: int) -> dict[str, str]:
    """The gateway as the overhead bench runs it: trace events on, no guardrails, no exporter."""
    return {
        "GATEWAY_ADMIN_KEY": "bench-admin",
        "GATEWAY_ROUTES_FILE": str(_routes(folder, upstream_port)),
        "GATEWAY_REDIS_PREFIX": "bench:cpu",
        "GATEWAY_EVENTS_STREAM": "bench:cpu:events",
        "GATEWAY_LOG_LEVEL": "WARNING",
    }


def load(url: str, key: str, rate: float, seconds: float, connections: int = 10) -> dict[str, Any]:
    """One fixed-rate phase: hey when installed, else the in-repo generator."""
    if (out := extgen.hey(url, BODY, key, connections, rate, seconds)) is not None:
        return out | {"generator": "hey"}
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    req = build_request(host, int(port), "/v1/chat/completions", BODY, {"Authorization": f"Bearer {key}"})
    phase = asyncio.run(fixed_rate(host, int(port), req, connections, rate, seconds))
    return {"requests": len(phase.latencies) + phase.errors, "errors": phase.errors, "generator": "bench/loadgen.py"}


def measure(url: str, pids: list[int], key: str, rate: float, seconds: float) -> dict[str, Any]:
    """CPU ms per answered request of the processes `pids` over one fixed-rate phase."""
    before = sum(cpu_seconds(p) for p in pids)
    out = load(url, key, rate, seconds)
    spent = sum(cpu_seconds(p) for p in pids) - before
    answered = out["requests"] - out["errors"]
    return out | {"cpu_s": round(spent, 3), "cpu_ms_per_request": round(spent * 1000 / max(1, answered), 3)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(pid: int, url: str, key: str, rate: float, seconds: float, native: bool = False) -> dict[str, Any]:
    """Sample the gateway with py-spy during a fixed-rate phase; write collapsed stacks and the SVG."""
    spy = gateway_peers.tool("py-spy")
    if spy is None:
        return {"skipped": "py-spy not found (run bench/gateway_peers.py to install the peers' venv)"}
    RESULTS.mkdir(exist_ok=True)
    collapsed = RESULTS / "gateway_profile.collapsed"
    cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "500", "--nonblocking"]
    cmd = [c for c in cmd if c != "--nonblocking"] + ["--native"] if native else cmd  # native needs pauses
    cmd += ["--duration", str(max(1, round(seconds))), "--output", str(collapsed)]
    spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out = load(url, key, rate, seconds)
    _, err = spy_proc.communicate(timeout=seconds + 60)
    if spy_proc.returncode != 0:
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    svg = collapsed.with_suffix(".svg")
    svg.write_text(gateway_flamegraph.render(collapsed.read_text(), title="gateway, no guardrails: CPU per request"))
    return out | {"collapsed": str(collapsed.relative_to(RESULTS.parent.parent)), "svg": str(svg.name)}


def start_gateway(stack: ExitStack, source: Path, env: dict[str, str], workers: int, log: Path) -> tuple[str, int]:
    """A gateway from the source tree `source` (this checkout, or a baseline's copy): its URL and root pid. Run from
    `source` itself, since `python -m` puts the working directory first on sys.path."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": f"{source}:{source / 'libs'}", **env}
    cmd = [sys.executable, "-m", "uvicorn", "services.gateway.app:create_app", "--factory", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    proc = stack.enter_context(server_process(cmd, log, env=full_env, cwd=source))
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/readyz", proc=proc)
    return base, proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second of the fixed-rate phase")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="phases per system, interleaved (A B A B ...)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also sample with py-spy (one worker only)")
    parser.add_argument("--native", action="store_true", help="py-spy --native: C frames too (uvloop, aiohttp)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the gateway (an experiment)")
    parser.add_argument(
        "--baseline", type=Path, help="a source tree (e.g. `git archive` of the commit before) run side by side"
    )
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    upstream_port = free_port()
    fake = start_fake_upstream(repo, upstream_port)
    sources = {"this": repo} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    result: dict[str, Any] = {"load_before": [round(v, 2) for v in os.getloadavg()], "rate_rps": args.rate}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        try:
            folder = Path(tmp)
            env = gateway_env(folder, upstream_port) | dict(e.split("=", 1) for e in args.env)
            systems = {}
            for name, source in sources.items():
                base, root = start_gateway(stack, source, env, args.workers, folder / f"{name}.log")
                systems[name] = (base, tree_pids(root))
            key = _key(systems["this"][0])  # one Redis: the key serves both
            for base, _ in systems.values():
                load(base + "/v1/chat/completions", key, args.rate, 2)  # warm: pools, the Lua script cache
            phases: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
            for _ in range(args.rounds):
                for name, (base, pids) in systems.items():
                    phases[name].append(measure(base + "/v1/chat/completions", pids, key, args.rate, args.seconds))
            result["workers"] = args.workers
            result["cpu_ms_per_request"] = {
                name: {
                    "median": statistics.median(p["cpu_ms_per_request"] for p in runs),
                    "phases": [p["cpu_ms_per_request"] for p in runs],
                    "p50_ms": [p.get("p50_ms") for p in runs],
                    "errors": sum(p["errors"] for p in runs),
                }
                for name, runs in phases.items()
            }
            if args.profile:
                base, pids = systems["this"]
                result["profile"] = profile(
                    pids[-1], base + "/v1/chat/completions", key, args.rate, args.seconds, args.native
                )
            result["load_after"] = [round(v, 2) for v in os.getloadavg()]
        finally:
            fake.terminate()
            import redis

            client = redis.Redis()
            for k in client.scan_iter(match="bench:cpu*", count=1000):
                client.delete(k)
    print(json.dumps(result, indent=2))
    if args.baseline:  # an A/B run is a result worth keeping: bench/results/gateway_cpu.json and .md
        write_result("gateway_cpu", result, markdown(result))


def markdown(result: dict[str, Any]) -> str:
    """The A/B table of bench/results/gateway_cpu.md."""
    cpu = result["cpu_ms_per_request"]
    lines = [
        f"Load average before: {result['load_before']}, after: {result['load_after']}. Phases of the two gateways "
        f"interleaved (A B A B ...), fixed rate {result['rate_rps']:.0f} req/s over 10 connections (hey), "
        f"{result['workers']} worker(s), no guardrails, trace events on.",
        "",
        "| gateway | CPU ms / request, median | every phase | errors |",
        "|---|---|---|---|",
    ]
    for name, row in cpu.items():
        lines.append(f"| {name} | {row['median']} | {row['phases']} | {row['errors']} |")
    if "baseline" in cpu and cpu["baseline"]["median"]:
        change = cpu["this"]["median"] / cpu["baseline"]["median"] - 1
        lines.append(f"\nThis tree over the baseline: {change:+.1%} CPU per request.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
