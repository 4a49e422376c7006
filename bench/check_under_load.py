"""Why a guardrails check slows down under load (issue 15, item 5): where its time goes while the engine is busy.

    python -m bench.check_under_load                       # private platform, 6 alternating 40 s windows
    python -m bench.check_under_load --window 30 --pairs 2

A private platform (bench/load.py's PrivatePlatform, its own ports and Redis) gets closed-loop clients of the load
mix without the checks (chat, stream, RAG; after a 429/503 a client waits its Retry-After) while one prober sends
a guardrails input check, then a GET /healthz, every 50 ms. Windows alternate the engine's scheduling group
between nice 0 and --nice (the llama.cpp child runs in a session of its own; /proc/<pid>/autogroup sets the
nice value its whole session is weighed with against the other services' sessions), so the two settings share the
machine's noise. Per window: the check's latency seen by the client, the same for /healthz (no work at all), the
check's own time inside guardrails (its check_duration histogram), the guardrails calls other kinds made, the
wake-up overshoot of a bare process sleeping 5 ms (scheduling delay alone), and the CPU each service's process
tree used. If the check's own time stays flat while client latency, /healthz and the sleeper rise together, the
check waits for a core, not for guardrails work.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.load import CHECK_TEXTS, PROMPTS, QUESTIONS, load_key
from bench.procstats import children_map, tree_pids
from bench.soak import RESULTS, PrivatePlatform, machine, percentile
from services.inference.engines.llamacpp_child import autogroup_nice, set_autogroup_nice

PORT_OFFSET = 25000
TICK = os.sysconf("SC_CLK_TCK")
SLEEPER = """
import sys, time
end, xs = time.monotonic() + float(sys.argv[1]), []
while time.monotonic() < end:
    t = time.perf_counter(); time.sleep(0.005); xs.append((time.perf_counter() - t - 0.005) * 1000)
print(" ".join(str(x) for x in xs))
"""


def service_pids(stack: PrivatePlatform) -> dict[int, str]:
    """Every process of the private platform, named by service (the llama.cpp child as `inference.engine`)."""
    tree, out = children_map(), {}
    for service, root in stack.pids().items():
        for pid in tree_pids(root, tree):
            try:
                engine = b"llamacpp_child" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            out[pid] = service + (".engine" if engine else "")
    return out


def cpu_seconds(stack: PrivatePlatform) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid, name in service_pids(stack).items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    out["load-client"] = sum(os.times()[:2])
    return out


def set_engine_group(stack: PrivatePlatform, nice: int) -> int | None:
    for pid, name in service_pids(stack).items():
        if name == "inference.engine":
            set_autogroup_nice(nice, pid)
            return autogroup_nice(pid)
    return None


def stats_ms(values: list[float]) -> dict[str, float]:
    xs = sorted(values)
    return {f"p{q}": round(percentile(xs, q), 1) for q in (50, 90, 99)} | {"max": round(xs[-1], 1) if xs else 0}


async def guardrails_counters(http: httpx.AsyncClient, url: str) -> tuple[float, float, dict[str, float]]:
    text = (await http.get(f"{url}/metrics")).text
    total = re.search(r'check_duration_seconds_sum\{direction="input"\} (\S+)', text)
    count = re.search(r'check_duration_seconds_count\{direction="input"\} (\S+)', text)
    calls: dict[str, float] = {}
    for m in re.finditer(r'llmops_guardrails_checks_total\{[^}]*direction="([^"]*)"[^}]*\} (\S+)', text):
        calls[m.group(1)] = calls.get(m.group(1), 0.0) + float(m.group(2))
    return float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0, calls


async def window(
    args: argparse.Namespace,
    stack: PrivatePlatform,
    http: httpx.AsyncClient,
    send: Callable[[str, int], Awaitable[tuple[str, float]]],
    guard: str,
    guard_auth: dict[str, str],
    rng: random.Random,
    nice: int,
) -> dict[str, Any]:
    """One window with the engine's group at `nice`: clients and prober until its end, then its figures."""
    group = set_engine_group(stack, nice)
    stop = time.monotonic() + args.window
    codes: dict[str, int] = {}
    check: list[float] = []
    healthz: list[float] = []

    async def client(seed: int) -> None:
        i = seed
        while time.monotonic() < stop:
            kind = rng.choices(["chat", "stream", "rag"], weights=[35, 25, 15])[0]
            code, wait = await send(kind, i)
            i += 1
            codes[code] = codes.get(code, 0) + 1
            if wait:
                await asyncio.sleep(min(wait, max(0.0, stop - time.monotonic())))

    async def prober() -> None:
        i = 0
        while time.monotonic() < stop:
            body = {"text": CHECK_TEXTS[i % len(CHECK_TEXTS)], "team": "load"}
            t = time.perf_counter()
            r = await http.post(f"{guard}/v1/check/input", headers=guard_auth, json=body)
            if r.status_code == 200:
                check.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await http.get(f"{guard}/healthz")
            healthz.append((time.perf_counter() - t) * 1000)
            i += 1
            await asyncio.sleep(0.05)

    cpu0, g0, t0 = cpu_seconds(stack), await guardrails_counters(http, guard), time.monotonic()
    load0 = os.getloadavg()[0]
    sleeper = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SLEEPER, str(args.window - 1), stdout=subprocess.PIPE
    )
    await asyncio.gather(prober(), *(client(100 * k) for k in range(args.clients)))
    wake = [float(x) for x in (await sleeper.communicate())[0].split()]
    elapsed, cpu1, g1 = time.monotonic() - t0, cpu_seconds(stack), await guardrails_counters(http, guard)
    used = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    return {
        "engine_group_nice": group,
        "check_ms": stats_ms(check) | {"n": len(check)},
        "healthz_ms": stats_ms(healthz),
        "check_inside_guardrails_mean_ms": round((g1[0] - g0[0]) / max(1.0, g1[1] - g0[1]) * 1000, 3),
        "guardrails_calls": {k: int(v - g0[2].get(k, 0)) for k, v in g1[2].items() if v > g0[2].get(k, 0)},
        "sleeper_overshoot_ms": stats_ms(wake),
        "load_requests": codes,
        "cpu_cores": {k: round(v / elapsed, 3) for k, v in used.items() if v > 0.005 * elapsed},
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


async def run(args: argparse.Namespace, stack: PrivatePlatform) -> list[dict[str, Any]]:
    values = stack.env_values()
    key = load_key(values)
    gateway, rag, guard = values["LLMOPS_GATEWAY_URL"], values["LLMOPS_RAG_URL"], values["LLMOPS_GUARDRAILS_URL"]
    auth = {"authorization": f"Bearer {key}"}
    guard_auth = {"authorization": f"Bearer {values['LLMOPS_GUARDRAILS_TOKEN']}"}
    rng = random.Random(args.seed)
    http = httpx.AsyncClient(timeout=180, limits=httpx.Limits(max_connections=64))

    async def send(kind: str, i: int) -> tuple[str, float]:
        if kind == "rag":
            body = {"question": QUESTIONS[i % len(QUESTIONS)]}
            r = await http.post(f"{rag}/v1/collections/llmops-docs/answer", headers=auth, json=body)
        else:
            chat: dict[str, Any] = {"model": "smollm2-135m-instruct", "max_tokens": args.max_tokens,
                                    "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]}  # fmt: skip
            if kind == "stream":
                chat["stream"] = True
            async with http.stream("POST", f"{gateway}/v1/chat/completions", headers=auth, json=chat) as r:
                await r.aread()
        wait = float(r.headers.get("retry-after") or 0) if r.status_code in (429, 503) else 0.0
        return f"{kind} {r.status_code}", wait

    rows = []
    try:
        for i in range(2):  # warm: model, pools, RAG's index
            await send("chat", i)
            await send("rag", i)
        for nice in [0, args.nice] * args.pairs:
            row = await window(args, stack, http, send, guard, guard_auth, rng, nice)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        set_engine_group(stack, args.nice)
        await http.aclose()
    return rows


def report_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Guardrails check latency beside a busy engine: engine's scheduling group at nice 0 vs "
        f"{result['config']['nice']}",
        "",
        f"- date: {result['started']} → {result['finished']} (UTC)",
        f"- machine: {result['machine'].get('cpus')} CPUs; load average at start {result['loadavg_start']}, "
        f"at end {result['loadavg_end']}",
        f"- windows of {result['config']['window']} s, alternating; {result['config']['clients']} closed-loop clients "
        "(chat 35 : stream 25 : RAG 15) and one prober (a check, then /healthz, every 50 ms)",
        "",
        "| # | engine group nice | check p50 / p90 / p99 ms | /healthz p50 / p99 ms | inside guardrails ms | "
        "sleeper overshoot p99 ms | engine cores | load avg |",
        "|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for i, r in enumerate(result["windows"], 1):
        c, h = r["check_ms"], r["healthz_ms"]
        lines.append(
            f"| {i} | {r['engine_group_nice']} | {c['p50']} / {c['p90']} / {c['p99']} | {h['p50']} / {h['p99']} | "
            f"{r['check_inside_guardrails_mean_ms']} | {r['sleeper_overshoot_ms']['p99']} | "
            f"{r['cpu_cores'].get('inference.engine', 0)} | {r['loadavg_1min']} |"
        )
    if result.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=40, help="seconds per window")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of windows (nice 0, then --nice)")
    parser.add_argument("--nice", type=int, default=10, help="the engine group's nice in every second window")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--note", action="append", default=[])
    parser.add_argument("--port-offset", type=int, default=PORT_OFFSET)
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/llmops-check-under-load"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", help="result file name (default check-under-load-<UTC date and time>)")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    load_start = [round(x, 2) for x in os.getloadavg()]
    stack = PrivatePlatform(args.state_dir, args.port_offset, gateway_workers=2)
    stack.ctl("up")
    try:
        windows = asyncio.run(run(args, stack))
    finally:
        stack.ctl("down", timeout_s=300)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "windows": windows,
        "notes": args.note,
    }
    name = args.name or f"check-under-load-{started:%Y-%m-%dT%H%MZ}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{name}.md").write_text(report_markdown(result))
    print(f"wrote {args.out / name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
