"""The response cache's cost and saving, in ONE run: the same fake upstream called directly, through the gateway
with the cache off for the model, on a cache miss (every request a new prompt), and on a cache hit (the same
deterministic request again), at fixed arrival rates well below saturation (the design's method).

A hit skips the upstream but not the policy path: authentication, admission (rpm/tpm/budget in Redis), the cache
read (one Redis GET), settlement and the trace event all still run. The fake upstream answers in well under a
millisecond, so "hit vs direct" is the gateway's own cost of a cached answer; against a real model a hit saves the
whole generation. Guardrails are off here (with them, a hit still pays the input check; see gateway_overhead).
Run: `python bench/gateway_cache.py --seconds 10` (writes bench/results/gateway_cache.{json,md}).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentile, versions, write_result
from bench.gateway_overhead import _cpu_s, _pid_listening, start_fake_upstream
from bench.loadgen import Phase, build_request
from scripts.demo_traffic import CHATS, PII_PROMPTS
from tests.support.servers import free_port, uvicorn_service

SCENARIOS = [(1, 50.0), (10, 200.0)]  # (connections, total req/s): below saturation, so latency is cost
ROUNDS = 5  # each path's time is split into this many turns


def _body(model: str, text: str = "ping " * 20) -> bytes:
    message = [{"role": "user", "content": text}]
    return json.dumps({"model": model, "messages": message, "max_tokens": 16, "temperature": 0}).encode()


async def fixed_rate(
    port: int, make: Callable[[int], bytes], connections: int, rate: float, seconds: float
) -> tuple[Phase, dict[str, list[float]]]:
    """bench/loadgen.py's open loop (latency from the scheduled time), with a request built per send (so every
    request can be a new prompt); latencies also by the x-llmops-cache header's value (hit|miss|none)."""
    phase = Phase()
    by_outcome: dict[str, list[float]] = {"hit": [], "miss": [], "none": []}
    interval = connections / rate
    start = time.perf_counter() + 0.2
    until = start + seconds
    sent = 0

    async def conn(offset: float) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        try:
            while (scheduled := start + offset + n * interval) < until:
                if (delay := scheduled - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                sent += 1
                writer.write(make(sent))
                head = await reader.readuntil(b"\r\n\r\n")
                status, length = int(head.split(b" ", 2)[1]), 0
                outcome = "none"
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"x-llmops-cache":
                        outcome = value.strip().decode()
                    elif name.lower() == b"x-llmops-overhead-ms":
                        phase.header_values.append(float(value))
                await reader.readexactly(length)
                phase.latencies.append(time.perf_counter() - scheduled)
                by_outcome[outcome].append(phase.latencies[-1])
                phase.errors += status != 200
                n += 1
        finally:
            writer.close()

    await asyncio.gather(*(conn(i / rate) for i in range(connections)))
    return phase, by_outcome


async def run(seconds: float, ports: dict[str, int], key: str, pid: int | None) -> list[dict[str, Any]]:
    """Every scenario, the four paths in turn; gateway CPU per request per path."""
    auth = {"Authorization": f"Bearer {key}"}
    gw, up = ports["gateway"], ports["direct"]

    def fixed(port: int, body: bytes, headers: dict[str, str]) -> Callable[[int], bytes]:
        request = build_request("127.0.0.1", port, "/v1/chat/completions", body, headers)
        return lambda _: request

    run_id = os.urandom(4).hex()  # misses stay misses when the bench is rerun within the TTL
    fresh = itertools.count()  # and across phases: every miss request carries a prompt never sent before
    paths: dict[str, tuple[int, Callable[[int], bytes]]] = {
        "direct": (up, fixed(up, _body("fake-model"), {})),
        "cache_off": (gw, fixed(gw, _body("bench-nocache"), auth)),
        "miss": (
            gw,
            lambda _: build_request(
                "127.0.0.1", gw, "/v1/chat/completions", _body("bench-cached", f"ping {run_id} {next(fresh)}"), auth
            ),
        ),
        "hit": (gw, fixed(gw, _body("bench-cached"), auth)),
    }
    for name in ("cache_off", "hit"):  # warm pools, scripts, and store the one entry the hits read
        await fixed_rate(*paths[name], 5, 100, 1.5)
    rows = []
    for connections, rate in SCENARIOS:
        row: dict[str, Any] = {"connections": connections, "rate_rps": rate, "rounds": ROUNDS}
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        errors = dict.fromkeys(paths, 0)
        headers: dict[str, dict[str, int]] = {name: {"hit": 0, "miss": 0, "none": 0} for name in paths}
        cpu_s, answered = dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0)
        own: dict[str, list[float]] = {name: [] for name in paths}  # x-llmops-overhead-ms: the gateway's own time
        # The paths take turns in short rounds, so a neighbour's burst on the shared machine lands on all of them.
        for _ in range(ROUNDS):
            for name, (port, make) in paths.items():
                before = _cpu_s(pid)
                phase, outcomes = await fixed_rate(port, make, connections, rate, seconds / ROUNDS)
                cpu_s[name] += _cpu_s(pid) - before
                latencies[name] += phase.latencies
                own[name] += phase.header_values
                errors[name] += phase.errors
                answered[name] += len(phase.latencies) - phase.errors
                for outcome, values in outcomes.items():
                    headers[name][outcome] += len(values)
        for name in paths:
            row[name] = {
                "p50_ms": round(percentile(latencies[name], 50) * 1000, 3),
                "p99_ms": round(percentile(latencies[name], 99) * 1000, 3),
                "requests": len(latencies[name]),
                "errors": errors[name],
                "cache_header": headers[name],
                "self_reported_overhead_p50_ms": round(percentile(own[name], 50), 3) if own[name] else None,
                "gateway_cpu_ms_per_request": None
                if name == "direct" or not answered[name]
                else round(cpu_s[name] * 1000 / answered[name], 3),
            }
        for name in ("cache_off", "miss", "hit"):
            row[f"{name}_added_p50_ms"] = round(row[name]["p50_ms"] - row["direct"]["p50_ms"], 3)
        row["hit_minus_off_p50_ms"] = round(row["hit"]["p50_ms"] - row["cache_off"]["p50_ms"], 3)
        row["miss_minus_off_p50_ms"] = round(row["miss"]["p50_ms"] - row["cache_off"]["p50_ms"], 3)
        rows.append(row)
    return rows


async def demo_mix(port: int, key: str, requests: int, rate: float) -> dict[str, Any]:
    """The demo traffic's non-streamed chats (scripts/demo_traffic.py: its chat and PII prompts, weights 0.40 and
    0.08) sent at temperature 0 from a cold cache: the hit rate such a mix reaches, and hit vs miss latency."""
    rng = random.Random(17)
    auth = {"Authorization": f"Bearer {key}"}
    run_id = os.urandom(4).hex()  # a cold cache on every run (the prompts carry it)
    prompts = [
        rng.choice(CHATS) if rng.random() < 0.40 / 0.48 else rng.choice(PII_PROMPTS) for _ in range(requests + 1)
    ]
    requests_ = [
        build_request("127.0.0.1", port, "/v1/chat/completions", _body("bench-cached", f"{p} [{run_id}]"), auth)
        for p in prompts
    ]
    phase, outcomes = await fixed_rate(port, lambda i: requests_[min(i, requests)], 1, rate, requests / rate)
    hits, misses = len(outcomes["hit"]), len(outcomes["miss"])
    return {
        "requests": len(phase.latencies),
        "distinct_prompts": len(set(prompts)),
        "rate_rps": rate,
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / max(1, hits + misses), 3),
        "hit_p50_ms": round(percentile(outcomes["hit"], 50) * 1000, 3),
        "miss_p50_ms": round(percentile(outcomes["miss"], 50) * 1000, 3),
        "errors": phase.errors,
    }


def markdown(result: dict[str, Any]) -> str:
    """The summary table."""
    m = result["demo_mix"]
    lines = [
        f"Load average (1/5/15 min) before: {result['load_before']}, after: {result['load_after']} (shared machine: "
        "compare within this run).",
        "",
        "Fixed rate, p50 / p99 ms (latency from the scheduled send time; the four paths take turns in "
        f"{ROUNDS} rounds); gateway CPU ms per request in brackets:",
        "",
        "| connections | rate | direct | gateway, cache off | cache miss | cache hit | hit added over direct p50 | "
        "miss added over direct p50 | hit - off p50 | miss - off p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:

        def cell(name: str, row: dict[str, Any] = r) -> str:
            c = row[name]
            cpu = f" [{c['gateway_cpu_ms_per_request']}]" if c["gateway_cpu_ms_per_request"] is not None else ""
            errors = f" (errors {c['errors']})" if c["errors"] else ""
            return f"{c['p50_ms']} / {c['p99_ms']}{cpu}{errors}"

        lines.append(
            f"| {r['connections']} | {r['rate_rps']:.0f} | {cell('direct')} | {cell('cache_off')} | {cell('miss')} | "
            f"{cell('hit')} | {r['hit_added_p50_ms']} | {r['miss_added_p50_ms']} | {r['hit_minus_off_p50_ms']} | "
            f"{r['miss_minus_off_p50_ms']} |"
        )
    lines += [
        "",
        "The gateway's own time per request (x-llmops-overhead-ms, p50 ms; from the handler's start to the answer, "
        "minus the upstream wait; a hit has no upstream): "
        + "; ".join(
            f"{r['connections']} conn: "
            + ", ".join(f"{p} {r[p]['self_reported_overhead_p50_ms']}" for p in ("cache_off", "miss", "hit"))
            for r in result["rows"]
        ),
        "",
        "Cache headers seen (hit / miss / none) per path: "
        + "; ".join(
            f"{r['connections']} conn: "
            + ", ".join(f"{p} {r[p]['cache_header']}" for p in ("cache_off", "miss", "hit"))
            for r in result["rows"]
        ),
        "",
        "Demo mix (scripts/demo_traffic.py's non-streamed chat and PII prompts at temperature 0, 1 connection, "
        f"{m['rate_rps']:.0f} req/s, cold cache): {m['requests']} requests over {m['distinct_prompts']} distinct "
        "prompts, "
        f"hit rate {m['hit_rate']} ({m['hits']} hits, {m['misses']} misses), p50 hit {m['hit_p50_ms']} ms vs miss "
        f"{m['miss_p50_ms']} ms (against the fake upstream: the saving per hit on a real model is its generation "
        "time). The demo itself sends no temperature, so on the shipped route (greedy_default false) none of its "
        "requests is cacheable.",
        "",
        "Target (issue 17): a hit costs <= 1 ms p50 over the direct upstream.",
        f"Setup: {result['setup']}",
    ]
    return "\n".join(lines)


def _routes(folder: Path, upstream_port: int) -> Path:
    deployment = {"name": "fake", "url": f"http://127.0.0.1:{upstream_port}/v1", "model": "fake-model"}
    price = {"input_per_1m": 0.1, "output_per_1m": 0.2}
    models = [
        {"name": "bench-nocache", "price": price, "deployments": [deployment]},
        {"name": "bench-cached", "price": price, "deployments": [deployment], "cache": {"enabled": True}},
    ]
    routes = folder / "routes.yaml"
    routes.write_text(yaml.safe_dump({"models": models}))
    return routes


def main() -> None:
    """Start the fake upstream and one gateway; run the phases; write the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--mix-requests", type=int, default=200, help="requests of the demo-mix phase")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    upstream_port = free_port()
    fake = start_fake_upstream(repo, upstream_port)
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        gw_env = {
            "GATEWAY_ADMIN_KEY": "bench-admin",
            "GATEWAY_ROUTES_FILE": str(_routes(folder, upstream_port)),
            "GATEWAY_REDIS_PREFIX": "benchcache:gw",
            "GATEWAY_EVENTS_STREAM": "benchcache:events",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
        try:
            url = stack.enter_context(
                uvicorn_service("services.gateway.app:create_app", gw_env, log_path=folder / "gw.log")
            )
            admin = {"authorization": "Bearer bench-admin"}
            limits = {"rpm_limit": 10**9, "tpm_limit": 10**9, "budget_usd": 10**6}
            httpx.post(url + "/admin/teams", headers=admin, json={"team": "bench", **limits})
            key = httpx.post(url + "/admin/keys", headers=admin, json={"team": "bench", **limits}).json()["key"]
            port = int(url.rsplit(":", 1)[1])
            rows = asyncio.run(run(args.seconds, {"direct": upstream_port, "gateway": port}, key, _pid_listening(port)))
            mix = asyncio.run(demo_mix(port, key, args.mix_requests, 20.0))
        finally:
            fake.terminate()
            import redis

            client = redis.Redis()
            for k in client.scan_iter(match="benchcache:*", count=1000):
                client.delete(k)
            client.close()
    result: dict[str, Any] = {"rows": rows, "demo_mix": mix, "load_before": load_before}
    result["load_after"] = [round(v, 2) for v in os.getloadavg()]
    result["versions"] = versions("fastapi", "uvicorn", "uvloop", "aiohttp", "redis", "hiredis")
    result["load_generator"] = "in-bench asyncio open loop at a fixed rate (bench/loadgen.py's method), same cores"
    result["setup"] = (
        f"1 uvicorn worker; bench and servers at niceness {os.nice(0)} (neighbours on the shared cores run at 0..10); "
        "Redis on loopback; trace events on; guardrails off; fake upstream (raw asyncio) in its own process; one key "
        "with limits far above the load; misses: a new prompt per request (each also stored); hits: one stored entry "
        "read again"
    )
    path = write_result("gateway_cache", result, markdown(result))
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
