"""Gateway overhead, with and without the guardrails in the path: the full policy path (auth, Redis limits,
metering, routing, trace event) in front of a FAKE fast upstream, against the same upstream called directly,
in ONE run, at 1, 10 and 100 connections.

Four systems side by side: the upstream direct; the gateway without guardrails; the gateway with the real
guardrails service in the path (`make up` puts it there: one input check before the model, one output check
after, the shipped default policy, its verdict cache off since real prompts differ); and the peer, LiteLLM's proxy
(pinned, installed by the bench into a venv of its own: bench/gateway_peers.py; skipped, saying why, when PyPI
cannot be reached). A fifth gateway exports every span (tracing cost), a sixth runs two workers (scaling).
Overhead = latency via a gateway minus latency direct, at a fixed arrival rate well
below saturation (the design's method); saturation is closed loop at 100 connections, measured by the in-repo
generator (bench/loadgen.py) and, where installed, by `wrk`; fixed-rate latency also by `hey` (bench/extgen.py).
Only ratios measured in one run compare: the machine's load average is recorded before and after.
Every system answers from the same fake upstream; LiteLLM runs one worker, with its master key as auth (its
virtual keys need PostgreSQL) and no database, i.e. its cheapest configuration. It saturates far below the rates of
the higher fixed-rate rows, so it runs only the rows at or below LITELLM_MAX_RATE (above, it would only queue).
Run: `make bench-gateway` (or `python bench/gateway_overhead.py --seconds 10 [--no-peers]`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import extgen, gateway_peers
from bench.common import percentile, versions, write_result
from bench.loadgen import Phase, build_request, closed_loop, fixed_rate
from bench.procstats import tree_pids
from tests.support.servers import free_port, uvicorn_process

BODY = json.dumps(
    {"model": "bench-model", "messages": [{"role": "user", "content": "ping " * 20}], "max_tokens": 16}
).encode()
# (connections, total requests/s); 10 at 20/s is issue 17's "latency at 20 req/s", below every path's saturation.
SCENARIOS = [(1, 50.0), (10, 20.0), (10, 200.0), (100, 200.0)]
HEY_SCENARIO = (10, 20.0)  # below every path's saturation (LiteLLM's too): latency and CPU per request are costs
GUARDRAILS_TOKEN = "bench-guardrails-token"
SYSTEMS = ("direct", "gateway", "guarded")  # guarded: the gateway with the guardrails service in the path
PEER = "litellm"  # LiteLLM's proxy, when its venv could be installed
LITELLM_MAX_RATE = 20.0  # fixed-rate rows above this are past LiteLLM's saturation on a shared 2-core machine
HEADER = b"x-llmops-overhead-ms"


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50) * 1000, 3), "p99_ms": round(percentile(values, 99) * 1000, 3)}


def _added(slow: Phase, fast: Phase, q: float) -> float:
    return round((percentile(slow.latencies, q) - percentile(fast.latencies, q)) * 1000, 3)


def _row(connections: int, rate: float, p: dict[str, Phase]) -> dict[str, Any]:
    g, gd, t = p["gateway"], p["guarded"], p["traced"]
    return {
        "connections": connections,
        "rate_rps": rate,
        "requests": len(g.latencies),
        **{name: _ms(p[name].latencies) | {"errors": p[name].errors} for name in (*SYSTEMS, PEER) if name in p},
        "litellm_added_p50_ms": _added(p[PEER], p["direct"], 50) if PEER in p else None,
        "added_p50_ms": _added(g, p["direct"], 50),
        "added_p99_ms": _added(g, p["direct"], 99),
        "guardrails_added_p50_ms": _added(gd, g, 50),
        "guardrails_added_p99_ms": _added(gd, g, 99),
        "self_reported_overhead_ms": {
            "p50": round(percentile(g.header_values, 50), 3),
            "p99": round(percentile(g.header_values, 99), 3),
        },
        "guarded_self_reported_overhead_ms": {  # up to the upstream call: includes the input check
            "p50": round(percentile(gd.header_values, 50), 3),
            "p99": round(percentile(gd.header_values, 99), 3),
        },
        "tracing_on": _ms(t.latencies) | {"errors": t.errors},
        "tracing_added_p50_ms": _added(t, g, 50),
        "tracing_self_reported_p50_ms": round(percentile(t.header_values, 50), 3),
    }


def _key_of(name: str, key: str) -> str | None:
    """The bearer each system is called with."""
    return None if name == "direct" else gateway_peers.MASTER_KEY if name == PEER else key


async def run(seconds: float, ports: dict[str, int], key: str) -> dict[str, Any]:
    """Fixed-rate rows and closed-loop saturation with the in-repo generator, every system in turn."""
    reqs = {
        name: build_request(
            "127.0.0.1", port, "/v1/chat/completions", BODY, {"Authorization": f"Bearer {who}"} if who else {}
        )
        for name, port in ports.items()
        if (who := _key_of(name, key)) is not None or name == "direct"
    }
    for name in ("gateway", "traced", "guarded", PEER):  # warm pools, the Lua script cache, the detectors
        if name in ports:
            await fixed_rate("127.0.0.1", ports[name], reqs[name], 10, 20 if name == PEER else 100, 2)
    rows = []
    for connections, rate in SCENARIOS:
        phases = {}
        for name in (*SYSTEMS, "traced", PEER):
            if name not in ports or (name == PEER and rate > LITELLM_MAX_RATE):
                continue
            header = HEADER if name in ("gateway", "guarded", "traced") else None
            phases[name] = await fixed_rate("127.0.0.1", ports[name], reqs[name], connections, rate, seconds, header)
        rows.append(_row(connections, rate, phases))
    saturation: dict[str, Any] = {"connections": 100}
    for name in (*SYSTEMS, PEER):
        if name not in ports:
            continue
        sat = await closed_loop("127.0.0.1", ports[name], reqs[name], 100, seconds)
        saturation[name] = {
            "rps": round(sat.statuses.get("200", 0) / seconds, 1),  # answered; refusals are errors, not throughput
            "errors": sat.errors,
            "outcomes": sat.statuses,
        } | _ms(sat.latencies)
    return {"fixed_rate": rows, "saturation": saturation}


def _pid_listening(port: int) -> int | None:
    """The uvicorn process serving `port` (its command line names the port; Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in args and b"--port" in args and args[args.index(b"--port") + 1] == str(port).encode():
            return int(proc.name)
    return None


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of(pids: list[int]) -> float:
    return sum(_cpu_s(p) for p in pids)


def external(seconds: float, ports: dict[str, int], key: str, pids: dict[str, list[int]]) -> dict[str, Any]:
    """The same systems under wrk (saturation) and hey (fixed rate), when installed; during each phase, the
    CPU each server process spent per answered request (what a request costs, whatever the neighbours take).
    `pids`: the processes serving each system (`guardrails`: the guardrails service's)."""
    out: dict[str, Any] = {
        "tools": extgen.tools(),
        "wrk": {},
        "hey": {},
        "cpu_ms_per_request": {},
        "cpu_ms_per_request_saturated": {},
    }
    serving_of = {
        "gateway": ["gateway"],
        "guarded": ["guarded", "guardrails"],
        PEER: [PEER],
        "gateway_2w": ["gateway_2w"],
    }
    for name in (*SYSTEMS, PEER, "gateway_2w"):
        if name not in ports:
            continue
        url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
        who = _key_of(name, key)
        serving = serving_of.get(name, [])
        before = {p: _cpu_of(pids.get(p, [])) for p in serving}
        out["wrk"][name] = w = extgen.wrk(url, BODY, who, 100, seconds)
        if w and serving and w["rps"]:
            answered = w["rps"] * max(1, round(seconds))
            for p in serving:
                spent = _cpu_of(pids.get(p, [])) - before[p]
                out["cpu_ms_per_request_saturated"][p] = round(spent * 1000 / answered, 3)
        if name == "gateway_2w":
            continue  # only its saturation (the scaling figure)
        before = {p: _cpu_of(pids.get(p, [])) for p in serving}
        out["hey"][name] = hey = extgen.hey(url, BODY, who, *HEY_SCENARIO, seconds)
        if hey and serving and hey["requests"] > hey["errors"]:
            answered = hey["requests"] - hey["errors"]
            for p in serving:
                out["cpu_ms_per_request"][p] = round((_cpu_of(pids.get(p, [])) - before[p]) * 1000 / answered, 3)
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Saturation ratios (same run, same machine): the only figures that compare across machines."""
    s, w = result["saturation"], result["external"]["wrk"]
    out = {
        "loadgen_gateway_over_direct": _ratio(s["gateway"]["rps"], s["direct"]["rps"]),
        "loadgen_guarded_over_gateway": _ratio(s["guarded"]["rps"], s["gateway"]["rps"]),
    }
    cpu = result["external"]["cpu_ms_per_request"]
    if cpu.get("gateway") and cpu.get("guarded") and "guardrails" in cpu:
        # Requests per second one core could serve, guardrails on over off: CPU per request, inverted.
        out["cpu_capacity_guarded_over_gateway"] = round(cpu["gateway"] / (cpu["guarded"] + cpu["guardrails"]), 3)
    if all(w.get(n) for n in SYSTEMS):
        out["wrk_gateway_over_direct"] = _ratio(w["gateway"]["rps"], w["direct"]["rps"])
        out["wrk_guarded_over_gateway"] = _ratio(w["guarded"]["rps"], w["gateway"]["rps"])
    if s.get(PEER):
        out["loadgen_gateway_over_litellm"] = _ratio(s["gateway"]["rps"], s[PEER]["rps"])
        out["loadgen_guarded_over_litellm"] = _ratio(s["guarded"]["rps"], s[PEER]["rps"])
    if w.get(PEER) and w.get("gateway"):
        out["wrk_gateway_over_litellm"] = _ratio(w["gateway"]["rps"], w[PEER]["rps"])
        out["wrk_guarded_over_litellm"] = _ratio(w["guarded"]["rps"], w[PEER]["rps"]) if w.get("guarded") else None
    if w.get("gateway_2w") and w.get("gateway"):
        out["wrk_two_workers_over_one"] = _ratio(w["gateway_2w"]["rps"], w["gateway"]["rps"])
    if cpu.get(PEER) and cpu.get("gateway"):
        out["cpu_litellm_over_gateway"] = _ratio(cpu[PEER], cpu["gateway"])
    h = result["external"]["hey"]
    if h.get(PEER) and h.get("gateway"):
        out["hey_p50_litellm_over_gateway"] = _ratio(h[PEER]["p50_ms"], h["gateway"]["p50_ms"])
    return out


def _cell(row: dict[str, Any], name: str) -> str:
    m = row.get(name)
    return f"{m['p50_ms']} / {m['p99_ms']}" if m else "-"


def markdown(result: dict[str, Any]) -> str:
    """The summary tables of bench/results/gateway_overhead.md."""
    peer = result.get("peer", {})
    lines = [
        f"Load average (1/5/15 min) before: {result['load_before']}, after: {result['load_after']}. "
        "A shared machine: compare ratios within this run, not absolutes across runs.",
        "",
        f"Peer: {peer.get('name', 'LiteLLM proxy')} {peer.get('version') or ''} "
        + (f"(skipped: {peer['skipped']})" if peer.get("skipped") else "(1 worker, master-key auth, no database)"),
        "",
        "Fixed rate, in-repo generator (latency from each request's scheduled time), p50 / p99 ms "
        f"(LiteLLM only at rates <= {LITELLM_MAX_RATE:.0f} req/s: above, it queues):",
        "",
        "| connections | rate (req/s) | direct | gateway | gateway + guardrails | LiteLLM | gateway added p50 / p99 | "
        "guardrails added p50 / p99 | LiteLLM added p50 | errors (gw / gw+g) | tracing on, added p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["fixed_rate"]:
        g, gd = r["gateway"], r["guarded"]
        lines.append(
            f"| {r['connections']} | {r['rate_rps']:.0f} | {_cell(r, 'direct')} | {_cell(r, 'gateway')} | "
            f"{_cell(r, 'guarded')} | {_cell(r, PEER)} | {r['added_p50_ms']} / {r['added_p99_ms']} | "
            f"{r['guardrails_added_p50_ms']} / {r['guardrails_added_p99_ms']} | "
            f"{r.get('litellm_added_p50_ms') or '-'} | "
            f"{g['errors']} / {gd['errors']} | {r['tracing_on']['p50_ms']}, {r['tracing_added_p50_ms']} |"
        )
    s, x, q = result["saturation"], result["external"], result["ratios"]
    past = [
        r
        for r in result["fixed_rate"]
        if r["guarded"]["errors"] or r["guarded"]["p50_ms"] > 10 * r["gateway"]["p50_ms"]
    ]
    if past:
        lines += [
            "",
            "Past saturation: at "
            + ", ".join(f"{r['connections']} connections / {r['rate_rps']:.0f} req/s" for r in past)
            + " the gateway with guardrails could not keep up on this machine at this load: its added latency there is "
            "queueing, not cost, and its errors are the default policy's fail-closed 503s (a check over its 250 ms "
            "budget). The rows below the saturation rate give the cost.",
        ]

    def sat(d: dict[str, Any] | None, errors: str = "errors") -> str:
        return f"{d['rps']} ({errors} {d[errors]})" if d else "-"

    lines += [
        "",
        "Saturation, closed loop, 100 connections (2xx answers per second; errors: other answers):",
        "",
        "| generator | direct | gateway | gateway + guardrails | LiteLLM | gateway / direct | guarded / gateway | "
        "gateway / LiteLLM |",
        "|---|---|---|---|---|---|---|---|",
        f"| bench/loadgen.py (Python) | {s['direct']['rps']} | {sat(s['gateway'])} | {sat(s['guarded'])} | "
        f"{sat(s.get(PEER))} | {q['loadgen_gateway_over_direct']} | {q['loadgen_guarded_over_gateway']} | "
        f"{q.get('loadgen_gateway_over_litellm', '-')} |",
    ]
    w = x["wrk"]
    if all(w.get(n) for n in SYSTEMS):
        lines.append(
            f"| wrk ({x['tools']['wrk']}) | {w['direct']['rps']} | {sat(w['gateway'], 'non2xx')} | "
            f"{sat(w['guarded'], 'non2xx')} | {sat(w.get(PEER), 'non2xx')} | {q['wrk_gateway_over_direct']} | "
            f"{q['wrk_guarded_over_gateway']} | {q.get('wrk_gateway_over_litellm', '-')} |"
        )
    if w.get("gateway_2w"):
        lines.append(
            f"\nTwo workers (uvicorn --workers 2, i.e. GATEWAY_WORKERS=2), wrk: {w['gateway_2w']['rps']} req/s, "
            f"{q.get('wrk_two_workers_over_one')}x one worker (wrk itself and the fake upstream share the same 2 "
            "cores, so this cannot reach 2x here). CPU per request, saturated: "
            f"{x.get('cpu_ms_per_request_saturated', {}).get('gateway_2w')} ms with two workers, "
            f"{x.get('cpu_ms_per_request_saturated', {}).get('gateway')} ms with one: what each request costs does "
            "not grow with workers, so throughput scales with the free cores."
        )
    lines.append(
        "\nClosed-loop figures on a shared 2-core machine swing with the neighbours (the guarded path runs three "
        "server processes, and past the guardrails' 250 ms budget it answers 503): the CPU per request below is "
        "the steadier measure of cost."
    )
    cpu, cpu_sat = x["cpu_ms_per_request"], x.get("cpu_ms_per_request_saturated", {})
    c, rate = HEY_SCENARIO
    if cpu:
        lines += [
            "",
            "Server CPU per answered request, ms (process CPU time / answers; guarded = gateway + guardrails service):",
            "",
            "| phase | gateway | gateway + guardrails | LiteLLM | LiteLLM / gateway |",
            "|---|---|---|---|---|",
            f"| hey, {c} connections, {rate:.0f} req/s | {cpu.get('gateway')} | {cpu.get('guarded')} + "
            f"{cpu.get('guardrails')} | {cpu.get(PEER, '-')} | {q.get('cpu_litellm_over_gateway', '-')} |",
        ]
        if cpu_sat:
            lit = _ratio(cpu_sat.get(PEER), cpu_sat.get("gateway"))
            lines.append(
                f"| wrk, 100 connections, saturated | {cpu_sat.get('gateway')} | {cpu_sat.get('guarded')} + "
                f"{cpu_sat.get('guardrails')} | {cpu_sat.get(PEER, '-')} | {lit or '-'} |"
            )
        lines.append(
            f"\nCapacity per core, guardrails on / off: {q.get('cpu_capacity_guarded_over_gateway')}. "
            "Target (issue 17): <= 0.5 ms CPU per request on the no-guardrails path."
        )
    h = x["hey"]
    if all(h.get(n) for n in SYSTEMS):
        lines += [
            "",
            f"Fixed rate with hey ({c} connections, {rate:.0f} req/s), p50 / p99 ms: direct "
            f"{h['direct']['p50_ms']} / {h['direct']['p99_ms']}, gateway {h['gateway']['p50_ms']} / "
            f"{h['gateway']['p99_ms']}, gateway + guardrails {h['guarded']['p50_ms']} / {h['guarded']['p99_ms']}"
            + (f", LiteLLM {h[PEER]['p50_ms']} / {h[PEER]['p99_ms']}" if h.get(PEER) else "")
            + f" (errors {h['gateway']['errors']} / {h['guarded']['errors']}"
            + (f" / {h[PEER]['errors']}" if h.get(PEER) else "")
            + ").",
        ]
    lines += [
        "",
        "Targets: added p50 <= 2 ms and p99 <= 10 ms at 100 connections, no errors; tracing adds <= 0.5 ms p50; "
        "issue 17: guardrails-on saturation >= 60 % of guardrails-off, guardrails add <= 3 ms p50, <= 0.5 ms CPU "
        "per request without guardrails, two workers >= 1.7x one.",
        f"Setup: {result['setup']}",
        f"Versions: {result['versions']}",
    ]
    return "\n".join(lines)


def _routes(folder: Path, upstream_port: int) -> Path:
    routes = folder / "routes.yaml"
    deployment = {"name": "fake", "url": f"http://127.0.0.1:{upstream_port}/v1", "model": "fake-model"}
    model = {"name": "bench-model", "price": {"input_per_1m": 0.1, "output_per_1m": 0.2}, "deployments": [deployment]}
    routes.write_text(yaml.safe_dump({"models": [model]}))
    return routes


def _key(url: str) -> str:
    """A key whose limits are far above the load, so every check runs in the script but none refuses."""
    admin = {"authorization": "Bearer bench-admin"}
    limits = {"rpm_limit": 10**9, "tpm_limit": 10**9, "budget_usd": 10**6}  # the schemas cap rates at 1e9
    httpx.post(url + "/admin/teams", headers=admin, json={"team": "bench", **limits})
    return str(httpx.post(url + "/admin/keys", headers=admin, json={"team": "bench", **limits}).json()["key"])


def start_fake_upstream(repo: Path, port: int) -> subprocess.Popen[bytes]:
    """The FAKE upstream (tests/support/fake_upstream.py) in its own process on `port`; the caller terminates it."""
    env = {**os.environ, "PYTHONPATH": f"{repo}:{repo / 'libs'}"}
    serve = (
        "import asyncio,sys; from tests.support.fake_upstream import FakeUpstream\n"
        "async def m():\n s = await FakeUpstream().serve(int(sys.argv[1])); await s.serve_forever()\nasyncio.run(m())"
    )
    return subprocess.Popen([sys.executable, "-c", serve, str(port)], cwd=repo, env=env)


def main() -> None:
    """Start the fake upstream, the guardrails service, the gateways and the peer; run the phases; write results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--no-peers", action="store_true", help="leave LiteLLM out (no install)")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    peer: dict[str, Any] = {"name": "LiteLLM proxy", "pinned": gateway_peers.LITELLM_VERSION}
    peer["skipped"] = "--no-peers" if args.no_peers else gateway_peers.ensure()
    if peer["skipped"]:
        print(f"LiteLLM left out of this run: {peer['skipped']}", file=sys.stderr)
    else:
        peer["version"] = gateway_peers.installed_version("litellm")
    upstream_port = free_port()
    fake = start_fake_upstream(repo, upstream_port)
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        gw_env = {
            "GATEWAY_ADMIN_KEY": "bench-admin",
            "GATEWAY_ROUTES_FILE": str(_routes(folder, upstream_port)),
            "GATEWAY_REDIS_PREFIX": "bench:gw",
            "GATEWAY_EVENTS_STREAM": "bench:events",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
        guard_env = {
            "GUARDRAILS_SERVICE_TOKEN": GUARDRAILS_TOKEN,
            "GUARDRAILS_VERDICT_CACHE_SIZE": "0",  # every real prompt differs; the bench sends one text
            "GUARDRAILS_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
        }
        try:
            app = "services.gateway.app:create_app"
            guard, guard_proc = stack.enter_context(
                uvicorn_process("services.guardrails.app:create_app", guard_env, log_path=folder / "guard.log")
            )
            variants = {
                "gateway": (gw_env, 1),
                "traced": (
                    {**gw_env, "OTEL_TRACES_EXPORTER": "file", "LLMOPS_TRACES_FILE": str(folder / "t.jsonl")},
                    1,
                ),
                "guarded": (
                    {**gw_env, "GATEWAY_GUARDRAILS_URL": guard, "GATEWAY_GUARDRAILS_TOKEN": GUARDRAILS_TOKEN},
                    1,
                ),
                "gateway_2w": (gw_env, 2),  # GATEWAY_WORKERS=2 (make up passes it to uvicorn --workers)
            }
            urls, pids = {}, {"guardrails": tree_pids(guard_proc.pid)}
            for name, (env, workers) in variants.items():
                urls[name], proc = stack.enter_context(
                    uvicorn_process(app, env, log_path=folder / f"{name}.log", workers=workers)
                )
                pids[name] = tree_pids(proc.pid)
            if not peer["skipped"]:
                try:
                    urls[PEER], proc = stack.enter_context(
                        gateway_peers.litellm_proxy(upstream_port, free_port(), folder)
                    )
                    pids[PEER] = tree_pids(proc.pid)
                except (RuntimeError, TimeoutError) as exc:
                    peer["skipped"] = str(exc)
                    print(f"LiteLLM left out of this run: {exc}", file=sys.stderr)
            key = _key(urls["gateway"])
            ports = {"direct": upstream_port} | {name: int(url.rsplit(":", 1)[1]) for name, url in urls.items()}
            result = asyncio.run(run(args.seconds, {n: p for n, p in ports.items() if n != "gateway_2w"}, key))
            result["external"] = external(args.seconds, ports, key, pids)
        finally:
            fake.terminate()
            import redis

            client = redis.Redis()
            for k in client.scan_iter(match="bench:*", count=1000):
                client.delete(k)
    result["peer"] = peer
    result["load_before"], result["load_after"] = load_before, [round(v, 2) for v in os.getloadavg()]
    result["ratios"] = ratios(result)
    result["versions"] = versions("fastapi", "uvicorn", "uvloop", "aiohttp", "redis", "hiredis", "onnxruntime") | {
        "litellm": peer.get("version") or "not run",
        "wrk": (result["external"]["tools"].get("wrk") or "not installed").split(" Copyright")[0],
        "hey": "Debian package" if result["external"]["tools"].get("hey") else "not installed",
    }
    result["load_generator"] = (
        "bench/loadgen.py (Python asyncio, open loop at a fixed rate; closed loop for saturation; same cores), "
        "and wrk (closed loop, 1 thread) / hey (fixed rate) where installed"
    )
    result["setup"] = (
        "1 uvicorn worker per gateway (and a 2-worker one for scaling) and for guardrails; LiteLLM proxy 1 worker, "
        "master key, no database; Redis on loopback; trace events on; fake upstream in its own process; "
        "guardrails: shipped default policy (input + output check per request), verdict cache off"
    )
    path = write_result("gateway_overhead", result, markdown(result))
    print((path.with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()
