"""What a semantic-cache hit costs the gateway, before and after the int8 encoder and the remembered vectors, in ONE
run (issue 17: "a hit costs <= 1 ms p50").

Gateways side by side, each with its own Redis prefix, all in front of the same fake upstream:

| gateway | what it runs |
|---|---|
| before | a baseline source tree (`--baseline DIR`, e.g. `git archive <commit>`): float encoder, every hit embeds |
| float, every hit embeds | this tree, GATEWAY_CACHE_SEMANTIC_INT8=false, GATEWAY_CACHE_SEMANTIC_EMBEDDINGS=0 |
| int8, every hit embeds | this tree, GATEWAY_CACHE_SEMANTIC_EMBEDDINGS=0: as if each wording were new |
| int8, remembered | this tree's defaults: a wording asked again is not embedded again |

Paths on each: an exact hit (the stored question again) and a semantic hit (a fixed rewording of it: an exact
miss, the question's vector, its context's vectors read and scored, the entry read). The gateways and paths take
turns in short rounds at a fixed rate well below saturation (1 connection), so the neighbours' load on a shared
machine falls on all of them alike. Reported per path: the gateway CPU per request (its process's CPU time over the
requests it answered: the figure that compares on a loaded machine), the gateway's own time per request
(x-llmops-overhead-ms, p50), and the latency added over the direct upstream (p50).
Run: `python bench/semantic_cache_hit.py --baseline /tmp/base [--seconds 20 --rounds 5 --rate 20]`
(writes bench/results/semantic_cache_hit.{json,md}).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentile, versions, write_result
from bench.gateway_cache import REWORDED, STORED, _body, _routes, fixed_rate
from bench.gateway_cpu import cpu_seconds, start_gateway
from bench.gateway_overhead import start_fake_upstream
from bench.loadgen import build_request
from tests.support.servers import free_port

GATEWAYS = {  # name -> (source: "baseline" or "this", extra environment)
    "before": ("baseline", {}),
    "float, every hit embeds": (
        "this",
        {"GATEWAY_CACHE_SEMANTIC_INT8": "false", "GATEWAY_CACHE_SEMANTIC_EMBEDDINGS": "0"},
    ),
    "int8, every hit embeds": ("this", {"GATEWAY_CACHE_SEMANTIC_EMBEDDINGS": "0"}),
    "int8, remembered": ("this", {}),
}
PATHS = {"exact hit": STORED, "semantic hit": REWORDED}


def _const(request: bytes) -> Callable[[int], bytes]:
    return lambda _: request


def _key(url: str) -> str:
    admin = {"authorization": "Bearer bench-admin"}
    limits = {"rpm_limit": 10**9, "tpm_limit": 10**9, "budget_usd": 10**6}
    httpx.post(url + "/admin/teams", headers=admin, json={"team": "bench", **limits})
    return str(httpx.post(url + "/admin/keys", headers=admin, json={"team": "bench", **limits}).json()["key"])


async def _warm(port: int, key: str) -> None:
    """Store the question (exact entry + its vector), wait for the index, then check both paths hit."""
    auth = {"Authorization": f"Bearer {key}"}
    store = build_request("127.0.0.1", port, "/v1/chat/completions", _body("bench-semantic", STORED), auth)
    await fixed_rate(port, lambda _: store, 1, 10, 1.0)
    for _ in range(100):
        reworded = build_request("127.0.0.1", port, "/v1/chat/completions", _body("bench-semantic", REWORDED), auth)
        _, outcomes = await fixed_rate(port, _const(reworded), 1, 10, 0.5)
        if outcomes["semantic_hit"]:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"gateway on {port}: the rewording never became a semantic hit")


def run(args: argparse.Namespace, repo: Path, folder: Path, stack: ExitStack, upstream: int) -> dict[str, Any]:
    """Start the gateways, warm them, run the interleaved rounds; per gateway and path the figures."""
    sources = {"baseline": args.baseline.resolve(), "this": repo}
    gateways: dict[str, dict[str, Any]] = {}
    for i, (name, (source, extra)) in enumerate(GATEWAYS.items()):
        env = {
            "GATEWAY_ADMIN_KEY": "bench-admin",
            "GATEWAY_ROUTES_FILE": str(_routes(folder, upstream)),
            "GATEWAY_REDIS_PREFIX": f"benchsemhit{i}:gw",
            "GATEWAY_EVENTS_STREAM": f"benchsemhit{i}:events",
            "GATEWAY_LOG_LEVEL": "WARNING",
            **extra,
        }
        url, pid = start_gateway(stack, sources[source], env, 1, folder / f"gw{i}.log")
        key = _key(url)
        asyncio.run(_warm(int(url.rsplit(":", 1)[1]), key))
        gateways[name] = {"url": url, "pid": pid, "key": key}
    direct = build_request("127.0.0.1", upstream, "/v1/chat/completions", _body("fake-model", STORED), {})
    cells: dict[str, dict[str, Any]] = {
        f"{g}|{p}": {"lat": [], "own": [], "cpu_s": 0.0, "answered": 0, "hits": 0} for g in gateways for p in PATHS
    }
    direct_lat: list[float] = []
    for _ in range(args.rounds):
        phase, _ = asyncio.run(fixed_rate(upstream, lambda _: direct, 1, args.rate, args.seconds / args.rounds))
        direct_lat += phase.latencies
        for name, gw in gateways.items():
            port = int(gw["url"].rsplit(":", 1)[1])
            for path, text in PATHS.items():
                auth = {"Authorization": f"Bearer {gw['key']}"}
                req = build_request("127.0.0.1", port, "/v1/chat/completions", _body("bench-semantic", text), auth)
                before = cpu_seconds(gw["pid"])
                phase, outcomes = asyncio.run(fixed_rate(port, _const(req), 1, args.rate, args.seconds / args.rounds))
                cell = cells[f"{name}|{path}"]
                cell["cpu_s"] += cpu_seconds(gw["pid"]) - before
                cell["answered"] += len(phase.latencies) - phase.errors
                cell["lat"] += phase.latencies
                cell["own"] += phase.header_values
                cell["hits"] += len(outcomes["semantic_hit" if path == "semantic hit" else "hit"])
    direct_p50 = percentile(direct_lat, 50) * 1000
    rows = []
    for name in gateways:
        for path in PATHS:
            c = cells[f"{name}|{path}"]
            rows.append(
                {
                    "gateway": name,
                    "path": path,
                    "requests": len(c["lat"]),
                    "hits": c["hits"],
                    "cpu_ms_per_request": round(c["cpu_s"] * 1000 / max(1, c["answered"]), 3),
                    "own_time_p50_ms": round(statistics.median(c["own"]), 3) if c["own"] else None,
                    "p50_ms": round(percentile(c["lat"], 50) * 1000, 3),
                    "added_over_direct_p50_ms": round(percentile(c["lat"], 50) * 1000 - direct_p50, 3),
                }
            )
    return {"rows": rows, "direct_p50_ms": round(direct_p50, 3)}


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table and the target's verdict."""
    lines = [
        f"Load average (1/5/15 min) before: {result['load_before']}, after: {result['load_after']} (2 shared cores: "
        "compare within this run; the CPU per request is the figure that holds under load).",
        "",
        f"Fixed rate {result['rate']} req/s, 1 connection, {result['rounds']} interleaved rounds, "
        f"{result['seconds']} s per path per gateway in all; direct upstream p50 {result['direct_p50_ms']} ms. "
        f"Stored question: {STORED!r}; rewording: {REWORDED!r}.",
        "",
        "| gateway | path | requests | hits | gateway CPU ms / request | gateway's own time p50 ms | "
        "p50 added over direct ms |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['gateway']} | {r['path']} | {r['requests']} | {r['hits']} | {r['cpu_ms_per_request']} | "
            f"{r['own_time_p50_ms']} | {r['added_over_direct_p50_ms']} |"
            for r in result["rows"]
        ),
    ]
    cpu = {(r["gateway"], r["path"]): r["cpu_ms_per_request"] for r in result["rows"]}
    before = cpu[("before", "semantic hit")]
    lines += [
        "",
        "Semantic hit, gateway CPU per request: before "
        + f"{before} ms; int8 with every hit embedding {cpu[('int8, every hit embeds', 'semantic hit')]} ms "
        + f"({before / max(1e-9, cpu[('int8, every hit embeds', 'semantic hit')]):.2f}x less); int8 with the wording "
        + f"remembered {cpu[('int8, remembered', 'semantic hit')]} ms "
        + f"({before / max(1e-9, cpu[('int8, remembered', 'semantic hit')]):.2f}x less; the exact hit on the same "
        + f"gateway: {cpu[('int8, remembered', 'exact hit')]} ms).",
        f"Setup: {result['setup']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True, help="source tree of the code before (git archive)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per path per gateway, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    upstream = free_port()
    fake = start_fake_upstream(repo, upstream)
    load_before = [round(v, 2) for v in os.getloadavg()]
    try:
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            result = run(args, repo, Path(tmp), stack, upstream)
    finally:
        fake.terminate()
        client = redis.Redis()
        for k in client.scan_iter(match="benchsemhit*", count=1000):
            client.delete(k)
        client.close()
    result |= {"load_before": load_before, "load_after": [round(v, 2) for v in os.getloadavg()]}
    result |= {"rate": args.rate, "rounds": args.rounds, "seconds": args.seconds, "baseline": str(args.baseline)}
    result["versions"] = versions("onnxruntime", "tokenizers", "fastapi", "uvicorn", "redis")
    result["setup"] = (
        f"4 gateways of 1 uvicorn worker each, at niceness {os.nice(0)}; the bench's generator on the same 2 cores; "
        "Redis on loopback; trace events on; guardrails off; fake upstream (raw asyncio) in its own process"
    )
    path = write_result("semantic_cache_hit", result, markdown(result))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
