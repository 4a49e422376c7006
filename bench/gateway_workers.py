"""GATEWAY_WORKERS=2 against 1: saturation throughput in ONE run, phases interleaved (issue 17: scaling >= 1.7x).

Two gateways of this tree, one with one uvicorn worker and one with two (what GATEWAY_WORKERS sets), in front of the
same fake upstream, no guardrails, trace events on (bench/gateway_cpu.py's setup). Each round saturates one, then
the other, closed loop with `wrk` (one thread, 100 connections; the in-repo generator is not used: its own cost
per request would cap the figure). Per phase: 2xx answers/s, the gateway's CPU per request (all its processes), and
how busy the machine's cores were (/proc/stat: a phase that leaves no idle core cannot show a second worker's gain,
whatever the gateway does). The ratio is reported per round and as the median over rounds.
Run: `python bench/gateway_workers.py [--rounds 3 --seconds 10]` (writes bench/results/gateway_workers.{json,md}).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import extgen
from bench.common import versions, write_result
from bench.gateway_cpu import cpu_seconds, gateway_env, start_gateway
from bench.gateway_overhead import BODY, _key, start_fake_upstream
from bench.procstats import tree_pids
from tests.support.servers import free_port


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores so far (/proc/stat's first line)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def phase(url: str, root: int, key: str, seconds: float, connections: int) -> dict[str, Any]:
    """One saturation phase: wrk's figures, the gateway's CPU per request and the machine's busy share."""
    pids = tree_pids(root)
    cpu_before, (busy0, total0) = sum(cpu_seconds(p) for p in pids), cpu_times()
    out = extgen.wrk(url + "/v1/chat/completions", BODY, key, connections, seconds)
    if out is None:
        raise SystemExit("wrk is not installed (apt-get install wrk): this bench measures saturation with it only")
    spent = sum(cpu_seconds(p) for p in pids) - cpu_before
    busy1, total1 = cpu_times()
    answered = out["rps"] * seconds
    return out | {
        "gateway_cpu_ms_per_request": round(spent * 1000 / max(1.0, answered), 3),
        "gateway_cores_used": round(spent / seconds, 2),
        "machine_busy_share": round((busy1 - busy0) / max(1.0, total1 - total0), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one phase")
    parser.add_argument("--connections", type=int, default=100)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    upstream = free_port()
    fake = start_fake_upstream(repo, upstream)
    load_before = [round(v, 2) for v in os.getloadavg()]
    phases: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    try:
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            folder = Path(tmp)
            gateways = {}
            for workers in (1, 2):
                env = gateway_env(folder, upstream) | {"GATEWAY_REDIS_PREFIX": f"bench:workers{workers}"}
                url, pid = start_gateway(stack, repo, env, workers, folder / f"gw{workers}.log")
                gateways[workers] = (url, pid, _key(url))
            for url, pid, key in gateways.values():  # warm: pools, scripts, key caches in every worker
                phase(url, pid, key, 2, args.connections)
            for _ in range(args.rounds):
                for workers, (url, pid, key) in gateways.items():
                    phases[workers].append(phase(url, pid, key, args.seconds, args.connections))
    finally:
        fake.terminate()
    ratios = [round(two["rps"] / one["rps"], 3) for one, two in zip(phases[1], phases[2], strict=True)]
    result: dict[str, Any] = {
        "phases": {str(k): v for k, v in phases.items()},
        "ratio_per_round": ratios,
        "ratio_median": statistics.median(ratios),
        "rps_median": {str(k): statistics.median(p["rps"] for p in v) for k, v in phases.items()},
        "cpu_ms_per_request_median": {
            str(k): statistics.median(p["gateway_cpu_ms_per_request"] for p in v) for k, v in phases.items()
        },
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
        "versions": versions("fastapi", "uvicorn", "uvloop", "aiohttp", "redis"),
        "setup": f"wrk -t1 -c{args.connections}, {args.seconds:.0f} s phases, 1 and 2 workers interleaved over "
        f"{args.rounds} rounds; wrk, the fake upstream, Redis and both gateways on the same {os.cpu_count()} cores "
        "(shared with other jobs); niceness " + str(os.nice(0)),
    }
    lines = [
        f"Load average before: {result['load_before']}, after: {result['load_after']}; {result['cpus']} cores shared "
        "with the load generator, the fake upstream, Redis and other jobs.",
        "",
        "| workers | round | req/s (2xx) | p50 ms | gateway CPU ms / request | gateway cores used | machine busy |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {w} | {i + 1} | {p['rps']} | {p['p50_ms']} | {p['gateway_cpu_ms_per_request']} | "
            f"{p['gateway_cores_used']} | {p['machine_busy_share']:.0%} |"
            for w, ps in phases.items()
            for i, p in enumerate(ps)
        ),
        "",
        f"Two workers over one: {ratios} per round, median **{result['ratio_median']}x** (target >= 1.7x). "
        f"CPU per request, median: 1 worker {result['cpu_ms_per_request_median']['1']} ms, 2 workers "
        f"{result['cpu_ms_per_request_median']['2']} ms.",
        f"Setup: {result['setup']}.",
    ]
    path = write_result("gateway_workers", result, "\n".join(lines))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
