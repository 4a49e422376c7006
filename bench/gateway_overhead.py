"""Gateway overhead: the full policy path (auth, Redis limits, metering, routing, trace event) in front of a
FAKE fast upstream, against the same upstream called directly, in one run, at 1, 10 and 100 connections.

Overhead = latency via the gateway minus latency direct, at a fixed arrival rate well below saturation
(the design's method); saturation throughput is reported separately (closed loop, 100 connections).
Run: `make bench-gateway` (or `python bench/gateway_overhead.py --seconds 10`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentile, versions, write_result
from bench.loadgen import build_request, closed_loop, fixed_rate
from tests.support.servers import free_port, uvicorn_service

BODY = json.dumps(
    {"model": "bench-model", "messages": [{"role": "user", "content": "ping " * 20}], "max_tokens": 16}
).encode()
SCENARIOS = [(1, 50.0), (10, 200.0), (100, 200.0)]  # (connections, total requests/s)


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50) * 1000, 3), "p99_ms": round(percentile(values, 99) * 1000, 3)}


async def run(seconds: float, gateway_port: int, traced_port: int, upstream_port: int, key: str) -> dict:
    direct = build_request("127.0.0.1", upstream_port, "/v1/chat/completions", BODY, {})
    via = build_request("127.0.0.1", gateway_port, "/v1/chat/completions", BODY, {"Authorization": f"Bearer {key}"})
    traced = build_request("127.0.0.1", traced_port, "/v1/chat/completions", BODY, {"Authorization": f"Bearer {key}"})
    # Warm every path (connection pools, Lua script cache).
    await fixed_rate("127.0.0.1", gateway_port, via, 10, 200, 2)
    await fixed_rate("127.0.0.1", traced_port, traced, 10, 200, 2)
    rows = []
    for connections, rate in SCENARIOS:
        d = await fixed_rate("127.0.0.1", upstream_port, direct, connections, rate, seconds)
        g = await fixed_rate("127.0.0.1", gateway_port, via, connections, rate, seconds, b"x-llmops-overhead-ms")
        t = await fixed_rate("127.0.0.1", traced_port, traced, connections, rate, seconds, b"x-llmops-overhead-ms")
        rows.append(
            {
                "connections": connections,
                "rate_rps": rate,
                "requests": len(g.latencies),
                "direct": _ms(d.latencies) | {"errors": d.errors},
                "gateway": _ms(g.latencies) | {"errors": g.errors},
                "added_p50_ms": round((percentile(g.latencies, 50) - percentile(d.latencies, 50)) * 1000, 3),
                "added_p99_ms": round((percentile(g.latencies, 99) - percentile(d.latencies, 99)) * 1000, 3),
                "self_reported_overhead_ms": {
                    "p50": round(percentile(g.header_values, 50), 3),
                    "p99": round(percentile(g.header_values, 99), 3),
                },
                "tracing_on": _ms(t.latencies) | {"errors": t.errors},
                "tracing_added_p50_ms": round((percentile(t.latencies, 50) - percentile(g.latencies, 50)) * 1000, 3),
                "tracing_self_reported_p50_ms": round(percentile(t.header_values, 50), 3),
            }
        )
    sat_direct = await closed_loop("127.0.0.1", upstream_port, direct, 100, seconds)
    sat_gateway = await closed_loop("127.0.0.1", gateway_port, via, 100, seconds)
    saturation = {
        "connections": 100,
        "direct_rps": round(len(sat_direct.latencies) / seconds, 1),
        "direct_errors": sat_direct.errors,
        "gateway_rps": round(len(sat_gateway.latencies) / seconds, 1),
        "gateway_errors": sat_gateway.errors,
        "gateway_outcomes": sat_gateway.statuses,
        "gateway_latency": _ms(sat_gateway.latencies),
    }
    return {"fixed_rate": rows, "saturation": saturation}


def main() -> None:
    """Start the fake upstream and a gateway, run the phases, write bench/results/gateway_overhead.*."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    upstream_port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{repo}:{repo / 'libs'}"}
    fake = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio,sys; from tests.support.fake_upstream import FakeUpstream\n"
            "async def m():\n s = await FakeUpstream().serve(int(sys.argv[1])); await s.serve_forever()\n"
            "asyncio.run(m())",
            str(upstream_port),
        ],
        cwd=repo,
        env=env,
    )
    with tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(
            yaml.safe_dump(
                {
                    "models": [
                        {
                            "name": "bench-model",
                            "price": {"input_per_1m": 0.1, "output_per_1m": 0.2},
                            "deployments": [
                                {"name": "fake", "url": f"http://127.0.0.1:{upstream_port}/v1", "model": "fake-model"}
                            ],
                        }
                    ]
                }
            )
        )
        gw_env = {
            "GATEWAY_ADMIN_KEY": "bench-admin",
            "GATEWAY_ROUTES_FILE": str(routes),
            "GATEWAY_REDIS_PREFIX": "bench:gw",
            "GATEWAY_EVENTS_STREAM": "bench:events",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
        try:
            traced_env = {**gw_env, "OTEL_TRACES_EXPORTER": "file", "LLMOPS_TRACES_FILE": str(Path(tmp) / "t.jsonl")}
            with (
                uvicorn_service("services.gateway.app:create_app", gw_env, log_path=Path(tmp) / "gw.log") as url,
                uvicorn_service("services.gateway.app:create_app", traced_env, log_path=Path(tmp) / "gwt.log") as turl,
            ):
                admin = {"authorization": "Bearer bench-admin"}
                # Limits far above the load, so every check runs in the script but none refuses.
                httpx.post(
                    url + "/admin/teams",
                    headers=admin,
                    json={"team": "bench", "rpm_limit": 10**9, "tpm_limit": 10**12, "budget_usd": 10**6},
                )
                key = httpx.post(
                    url + "/admin/keys",
                    headers=admin,
                    json={"team": "bench", "rpm_limit": 10**9, "tpm_limit": 10**12, "budget_usd": 10**6},
                ).json()["key"]
                ports = int(url.rsplit(":", 1)[1]), int(turl.rsplit(":", 1)[1])
                result = asyncio.run(run(args.seconds, *ports, upstream_port, key))
        finally:
            fake.terminate()
            import redis

            client = redis.Redis()
            for k in client.scan_iter(match="bench:*", count=1000):
                client.delete(k)
    result["versions"] = versions("fastapi", "uvicorn", "uvloop", "aiohttp", "redis", "hiredis")
    result["load_generator"] = "bench/loadgen.py (Python asyncio, open loop at a fixed rate; same 2 cores)"
    result["setup"] = "1 uvicorn worker; Redis on loopback; trace events on; fake upstream in its own process"
    lines = [
        "| connections | rate (req/s) | direct p50/p99 ms | gateway p50/p99 ms | added p50 | added p99 | "
        "self-reported p50/p99 | errors | tracing on: p50/p99 ms, added p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["fixed_rate"]:
        lines.append(
            f"| {r['connections']} | {r['rate_rps']:.0f} | {r['direct']['p50_ms']} / {r['direct']['p99_ms']} | "
            f"{r['gateway']['p50_ms']} / {r['gateway']['p99_ms']} | {r['added_p50_ms']} | {r['added_p99_ms']} | "
            f"{r['self_reported_overhead_ms']['p50']} / {r['self_reported_overhead_ms']['p99']} | "
            f"{r['gateway']['errors']} | {r['tracing_on']['p50_ms']} / {r['tracing_on']['p99_ms']}, "
            f"{r['tracing_added_p50_ms']} |"
        )
    s = result["saturation"]
    lines.append(
        f"\nSaturation (closed loop, 100 connections): gateway {s['gateway_rps']} req/s "
        f"(errors {s['gateway_errors']}: {s['gateway_outcomes']}), upstream direct {s['direct_rps']} req/s.\n"
        "Targets: added p50 <= 2 ms and p99 <= 10 ms at 100 connections, no errors; tracing adds <= 0.5 ms p50.\n"
        "Metrics are on in both gateways (they cannot be turned off); the traced one exports every span to a file."
    )
    path = write_result("gateway_overhead", result, "\n".join(lines))
    print((path.with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()
