"""Soak: the demo traffic mix against a private platform for a long while, and whether anything grows.

    make soak DURATION=3600                   # one hour; results in bench/results/soak-<date>.md/json
    python -m bench.soak --duration 600 --window 60 --keep-up

The platform is started as `make up` starts it (scripts/platformctl.py), but private: its own state folder,
every port shifted by --port-offset and its own Redis, so it shares nothing with a developer's platform or with
other tests on the machine. Traffic is scripts/demo_traffic.py's mix (chat, streams, RAG, injections, PII, 429
bursts, feedback), one request at a time at --rate; everything stays on loopback.

Every --window seconds (5 minutes by default) one sample: per service the resident memory and open file
descriptors of its whole process tree, Redis's used memory, its key count by family and its streams' lengths,
the load average, and latency percentiles per request kind over the window. At the end a least-squares line
through each series after --warmup gives its slope, per hour and relative to its mean: growth must be flat.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import redis

from bench.procstats import children_map, tree_usage

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SOAK_PORT_OFFSET = 21000  # 8000 -> 29000, Redis 6379 -> 27379: clear of `make up` and of the tests' free ports
MIB = 1024 * 1024

# Growth a series may show over the measured (post warm-up) span and still count as flat: a share of its mean, or
# an absolute floor for series near zero (a few fds, a handful of keys, allocator noise of a few MiB).
FLAT_SHARE = 0.05
FLAT_FLOOR = {"rss_bytes": 8 * MIB, "fds": 8, "redis_used_memory": 4 * MIB, "keys": 50, "stream_len": 50}


def load_demo_traffic() -> ModuleType:
    """scripts/demo_traffic.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("demo_traffic", REPO / "scripts" / "demo_traffic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class LatencyLog:
    """Latency and outcome of each request, drained once per window (thread-safe)."""

    entries: list[tuple[str, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, outcome: str) -> None:
        with self.lock:
            self.entries.append((kind, seconds, outcome))

    def drain(self) -> list[tuple[str, float, str]]:
        with self.lock:
            out, self.entries = self.entries, []
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def window_latency(entries: list[tuple[str, float, str]]) -> dict[str, dict[str, Any]]:
    """Per request kind: count, outcomes, p50/p95/p99/max latency (ms) of one window."""
    by_kind: dict[str, list[tuple[float, str]]] = {}
    for kind, seconds, outcome in entries:
        by_kind.setdefault(kind, []).append((seconds, outcome))
    out = {}
    for kind, rows in sorted(by_kind.items()):
        values = sorted(s * 1000 for s, _ in rows)
        out[kind] = {
            "count": len(rows),
            "outcomes": dict(Counter(o for _, o in rows)),
            "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(values[-1], 1),
        }
    return out


def key_family(key: str) -> str:
    """A key's family: its first three ':'-separated parts (ids and hashes come later in the platform's names)."""
    return ":".join(key.split(":")[:3])


class Recorder:
    """Takes one sample of the platform's resource use: processes from /proc, Redis from INFO and SCAN."""

    def __init__(self, services: Callable[[], dict[str, int]], redis_client: redis.Redis, key_prefix: str = "") -> None:
        self.services = services  # name -> root pid, re-read each time (a restarted service has a new pid)
        self.redis = redis_client
        self.key_prefix = key_prefix  # only keys under it are counted (a shared Redis); "" = the whole database

    def redis_sample(self) -> dict[str, Any]:
        info = self.redis.info("memory")
        families: Counter[str] = Counter()
        for key in self.redis.scan_iter(match=f"{self.key_prefix}*", count=1000):
            families[key_family(key.decode(errors="replace"))] += 1
        streams = {}
        for key in self.redis.scan_iter(match=f"{self.key_prefix}*", count=1000, _type="stream"):
            name = key.decode(errors="replace")
            streams[name] = {"len": int(self.redis.xlen(key)), "bytes": int(self.redis.memory_usage(key) or 0)}
        return {
            "used_memory": int(info["used_memory"]),
            "keys": sum(families.values()),
            "families": dict(families.most_common(25)),
            "streams": streams,
        }

    def sample(self, elapsed_s: float, latencies: list[tuple[str, float, str]]) -> dict[str, Any]:
        tree = children_map()
        return {
            "t_s": round(elapsed_s, 1),
            "wall": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "services": {name: tree_usage(pid, tree) for name, pid in sorted(self.services().items())},
            "redis": self.redis_sample(),
            "latency": window_latency(latencies),
        }


def fit_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def series(samples: list[dict[str, Any]]) -> dict[str, tuple[str, list[tuple[float, float]]]]:
    """Every measured series as name -> (unit family, [(t_s, value)]); a gap (service gone) is left out."""
    out: dict[str, tuple[str, list[tuple[float, float]]]] = {}

    def add(name: str, unit: str, t: float, value: float) -> None:
        if not math.isnan(value):
            out.setdefault(name, (unit, []))[1].append((t, value))

    for s in samples:
        t = s["t_s"]
        for svc, use in s["services"].items():
            if use["processes"]:
                add(f"{svc}.rss_bytes", "rss_bytes", t, use["rss_bytes"])
                if "rss_anon_bytes" in use:  # recorded since the first hour-long result
                    add(f"{svc}.rss_anon_bytes", "rss_bytes", t, use["rss_anon_bytes"])
                add(f"{svc}.fds", "fds", t, use["fds"])
        add("redis.used_memory", "redis_used_memory", t, s["redis"]["used_memory"])
        add("redis.keys", "keys", t, s["redis"]["keys"])
        for name, stream in s["redis"]["streams"].items():
            add(f"redis.stream[{name}].len", "stream_len", t, stream["len"])
        for kind, lat in s["latency"].items():
            for q in ("p50_ms", "p99_ms"):
                if (value := _ms(lat.get(q))) is not None:  # an empty window has no latency, not a NaN one
                    add(f"latency.{kind}.{q}", "latency_ms", t, value)
    return out


def analyse(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, dict[str, Any]]:
    """Slope of each series over the samples after `warmup_s`: per hour, and the growth over the measured span
    against its mean; `flat` when that growth (a fall counts as flat) stays under FLAT_SHARE of the mean or the
    series' absolute floor.
    Latency is reported, not judged: on a shared machine it follows the neighbours' load more than the platform."""
    out = {}
    for name, (unit, points) in series(samples).items():
        kept = [(t, v) for t, v in points if t >= warmup_s]
        if len(kept) < 2:
            continue
        xs, ys = [t for t, _ in kept], [v for _, v in kept]
        slope = fit_slope(xs, ys)  # per second
        span = xs[-1] - xs[0]
        mean = sum(ys) / len(ys)
        growth = slope * span
        row: dict[str, Any] = {
            "unit": unit,
            "n": len(kept),
            "first": ys[0],
            "last": ys[-1],
            "mean": round(mean, 2),
            "slope_per_hour": round(slope * 3600, 3),
            "growth_over_span": round(growth, 3),
            "growth_pct_of_mean": round(100 * growth / mean, 2) if mean else 0.0,
        }
        if unit != "latency_ms":
            # One-sided: a fall is no leak (the kernel takes file-backed pages back under a neighbour's memory
            # pressure, a stream is trimmed); only growth beyond the allowance is.
            row["flat"] = bool(growth <= max(FLAT_SHARE * abs(mean), FLAT_FLOOR[unit]))
        out[name] = row
    return out


def machine() -> dict[str, Any]:
    """Where the run happened."""

    def first(path: str, prefix: str) -> str:
        with contextlib.suppress(OSError), open(path) as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith(prefix)), "")
        return ""

    cpu = first("/proc/cpuinfo", "model name")
    mem_kib = first("/proc/meminfo", "MemTotal").split(" ")[0]
    mem = int(mem_kib) * 1024 if mem_kib.isdigit() else 0
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": mem,
    }


def timed_traffic(demo: ModuleType, config: Any, log: LatencyLog, seed: int, max_tokens: int) -> Any:
    """demo_traffic's DemoTraffic whose every counted request also lands in `log` with its latency: an httpx
    request hook marks the start, and the stats' add() (called once each request is over) closes it."""

    class TimedStats(demo.Stats):  # type: ignore[name-defined,misc]
        started = 0.0

        def add(self, kind: str, outcome: str) -> None:
            super().add(kind, outcome)
            log.record(kind, time.perf_counter() - self.started, outcome)

    traffic = demo.DemoTraffic(config, random.Random(seed), max_tokens)
    stats = TimedStats()
    traffic.stats = stats

    def mark(_: httpx.Request) -> None:
        stats.started = time.perf_counter()

    traffic.http.event_hooks = {"request": [mark], "response": []}
    return traffic


def run(
    step: Callable[[], None],
    recorder: Recorder,
    log: LatencyLog,
    duration_s: float,
    window_s: float,
    rate: float,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Act at up to `rate` actions/s for `duration_s`, one sample at the start and after each window."""
    started = time.monotonic()
    log.drain()
    samples = [recorder.sample(0.0, [])]
    next_sample = started + window_s
    deadline = started + duration_s
    while True:
        now = time.monotonic()
        if now >= next_sample:
            samples.append(recorder.sample(now - started, log.drain()))
            if progress:
                progress(samples[-1])
            next_sample += window_s
            if next_sample > deadline + 1e-6:
                break
            continue
        began = time.monotonic()
        step()
        time.sleep(max(0.0, min(1.0 / rate - (time.monotonic() - began), next_sample - time.monotonic())))
    return samples


def report_markdown(result: dict[str, Any]) -> str:
    """The human-readable result."""
    m, cfg, verdict = result["machine"], result["config"], result["analysis"]
    lines = [
        f"# Soak: {cfg['duration_s'] / 60:.0f} minutes of the demo traffic mix",
        "",
        f"- date: {result['started']} → {result['finished']} (UTC)",
        f"- machine: {m['host']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_bytes'] / 2**30:.1f} GiB, "
        f"{m['os']}, Python {m['python']}",
        f"- load average (1/5/15 min) at start {result['loadavg_start']}, at end {result['loadavg_end']}; "
        "**the machine is shared** with other sessions' tests and benchmarks, so latency follows their load",
        f"- platform: started as `make up` (scripts/platformctl.py), private state and ports (offset "
        f"{cfg['port_offset']}), its own Redis; gateway workers: {cfg['gateway_workers']}",
        f"- traffic: scripts/demo_traffic.py's mix, one request at a time, up to {cfg['rate']} actions/s, "
        f"max_tokens {cfg['max_tokens']}, seed {cfg['seed']}",
        f"- sample every {cfg['window_s']:.0f} s; slopes are least-squares lines through the samples after a "
        f"{cfg['warmup_s']:.0f} s warm-up; `flat`: growth over the measured span ≤ {FLAT_SHARE:.0%} of the mean "
        "or an absolute floor (a few MiB, fds or keys); a fall is flat",
        "",
        f"**Verdict: {result['verdict']}**",
        "",
        "## Slopes after warm-up",
        "",
        "| series | first | last | mean | slope / hour | growth over span | % of mean | flat |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]

    def fmt(unit: str, value: float) -> str:
        if unit in ("rss_bytes", "redis_used_memory"):
            return f"{value / MIB:.1f} MiB"
        if unit == "latency_ms":
            return f"{value:.0f} ms"
        return f"{value:.0f}"

    for name, row in verdict.items():
        flat = "—" if "flat" not in row else ("yes" if row["flat"] else "**no**")
        lines.append(
            f"| {name} | {fmt(row['unit'], row['first'])} | {fmt(row['unit'], row['last'])} | "
            f"{fmt(row['unit'], row['mean'])} | {fmt(row['unit'], row['slope_per_hour'])} | "
            f"{fmt(row['unit'], row['growth_over_span'])} | {row['growth_pct_of_mean']:+.1f}% | {flat} |"
        )
    lines += ["", "## Windows", "", "| t | load 1m | " + " | ".join(result["services"]) + " | redis | keys |"]
    lines.append("|---:|---:|" + "---:|" * (len(result["services"]) + 2))
    for s in result["samples"]:
        cells = [
            f"{s['services'][n]['rss_bytes'] / MIB:.0f} MiB / {s['services'][n]['fds']} fd"
            if n in s["services"]
            else "-"
            for n in result["services"]
        ]
        lines.append(
            f"| {s['t_s'] / 60:.1f} min | {s['loadavg'][0]} | "
            + " | ".join(cells)
            + f" | {s['redis']['used_memory'] / MIB:.1f} MiB | {s['redis']['keys']} |"
        )
    lines += ["", "## Latency per request kind and window (p50 / p99 ms, count)", ""]
    kinds = sorted({k for s in result["samples"] for k in s["latency"]})
    lines.append("| t | " + " | ".join(kinds) + " |")
    lines.append("|---:|" + "---|" * len(kinds))
    for s in result["samples"][1:]:
        cells = [latency_cell(s["latency"].get(k)) for k in kinds]
        lines.append(f"| {s['t_s'] / 60:.1f} min | " + " | ".join(cells) + " |")
    totals: Counter[str] = Counter()
    for s in result["samples"]:
        for kind, lat in s["latency"].items():
            for outcome, count in lat["outcomes"].items():
                totals[f"{kind}: {outcome}"] += count
    lines += ["", "## Outcomes over the whole run", ""]
    lines += [f"- {name}: {count}" for name, count in sorted(totals.items())]
    if result.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"


def _ms(value: Any) -> float | None:
    """A latency figure, or None where a window had none to measure (absent, null, or NaN in older results)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def latency_cell(lat: dict[str, Any] | None) -> str:
    """`p50 / p99 (count)` of one kind in one window; `- (n=0)` when it had no request to measure: a NaN in the
    table read as a broken run, not as an empty window."""
    if not lat or _ms(lat.get("p50_ms")) is None or _ms(lat.get("p99_ms")) is None:
        return f"- (n={lat.get('count', 0) if lat else 0})"
    return f"{lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} ({lat['count']})"


def verdict_of(analysis: dict[str, dict[str, Any]]) -> str:
    growing = [name for name, row in analysis.items() if row.get("flat") is False]
    return "flat after warm-up" if not growing else "growth in " + ", ".join(growing)


def build_result(samples: list[dict[str, Any]], config: dict[str, Any], started: str) -> dict[str, Any]:
    analysis = analyse(samples, config["warmup_s"])
    return {
        "started": started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": samples[0]["loadavg"],
        "loadavg_end": samples[-1]["loadavg"],
        "config": config,
        "services": sorted({n for s in samples for n in s["services"]}),
        "analysis": analysis,
        "verdict": verdict_of(analysis),
        "samples": samples,
    }


def write_result(result: dict[str, Any], out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(report_markdown(result))
    return json_path, md_path


class PrivatePlatform:
    """The platform as `make up` starts it, in its own state folder, ports and Redis (scripts/platformctl.py)."""

    def __init__(self, state_dir: Path, port_offset: int, gateway_workers: int = 1) -> None:
        self.state_dir, self.port_offset, self.gateway_workers = state_dir, port_offset, gateway_workers
        self.env = {
            **os.environ,
            "LLMOPS_STATE_DIR": str(state_dir),
            "LLMOPS_PORT_OFFSET": str(port_offset),
            "GATEWAY_WORKERS": str(gateway_workers),
        }

    def ctl(self, command: str, timeout_s: float = 1200) -> None:
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "platformctl.py"), command],
            cwd=REPO,
            env=self.env,
            check=True,
            timeout=timeout_s,
        )

    def pids(self) -> dict[str, int]:
        run = self.state_dir / "run"
        out = {}
        for path in sorted(run.glob("*.pid")) if run.exists() else []:
            try:
                out[path.stem] = int(path.read_text().strip())
            except ValueError:
                continue
        return out

    def env_values(self) -> dict[str, str]:
        values = {}
        for line in (self.state_dir / "env").read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                values[key] = value
        return values

    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{6379 + self.port_offset}/0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600, help="seconds of traffic (default 3600)")
    parser.add_argument("--window", type=float, help="seconds between samples (default 300; a quarter of a short run)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds left out of the slopes (default 1/6)")
    parser.add_argument("--rate", type=float, default=1.0, help="actions per second at most (default 1)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--port-offset", type=int, default=SOAK_PORT_OFFSET)
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/llmops-soak"))
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--keep-up", action="store_true", help="leave the private platform running afterwards")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", help="result file name (default soak-<UTC date and time>)")
    parser.add_argument("--render", type=Path, help="only rewrite the .md of this result .json (no run)")
    args = parser.parse_args(argv)
    if args.render:
        args.render.with_suffix(".md").write_text(report_markdown(json.loads(args.render.read_text())))
        print(f"wrote {args.render.with_suffix('.md')}")
        return 0
    if args.window is None:
        args.window = 300.0 if args.duration >= 1200 else args.duration / 4
    if not 0 < args.duration <= 7 * 86400 or not 0 < args.window <= args.duration or not 0 < args.rate <= 20:
        parser.error("need 0 < --window <= --duration <= 7 days and 0 < --rate <= 20")
    warmup = args.duration / 6 if args.warmup is None else args.warmup
    started = dt.datetime.now(dt.UTC)
    name = args.name or f"soak-{started:%Y-%m-%dT%H%MZ}"

    stack = PrivatePlatform(args.state_dir, args.port_offset, args.gateway_workers)
    print(f"starting a private platform in {args.state_dir} (ports +{args.port_offset})", flush=True)
    stack.ctl("up")
    try:
        demo = load_demo_traffic()
        values = stack.env_values()
        config = demo.Config(
            gateway=demo.require_loopback(values["LLMOPS_GATEWAY_URL"]),
            api_key=values["LLMOPS_API_KEY"],
            admin_key=values.get("LLMOPS_ADMIN_KEY"),
            feedback=demo.require_loopback(values["LLMOPS_FEEDBACK_URL"]),
            rag=demo.require_loopback(values["LLMOPS_RAG_URL"]),
            model="smollm2-135m-instruct",
        )
        log = LatencyLog()
        traffic = timed_traffic(demo, config, log, args.seed, args.max_tokens)
        traffic.check_platform()
        recorder = Recorder(stack.pids, redis.Redis.from_url(stack.redis_url()))

        def progress(sample: dict[str, Any]) -> None:
            rss = ", ".join(f"{n} {u['rss_bytes'] / MIB:.0f}MiB/{u['fds']}fd" for n, u in sample["services"].items())
            print(
                f"[{sample['t_s'] / 60:5.1f} min] load {sample['loadavg'][0]}  {rss}  redis "
                f"{sample['redis']['used_memory'] / MIB:.1f}MiB {sample['redis']['keys']} keys  "
                + "  ".join(f"{k} {latency_cell(v)}" for k, v in sample["latency"].items()),
                flush=True,
            )

        samples = run(traffic.step, recorder, log, args.duration, args.window, args.rate, progress)
        traffic.close()
    finally:
        if not args.keep_up:
            stack.ctl("down", timeout_s=300)
    run_config = {
        "duration_s": args.duration,
        "window_s": args.window,
        "warmup_s": warmup,
        "rate": args.rate,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "port_offset": args.port_offset,
        "gateway_workers": args.gateway_workers,
    }
    result = build_result(samples, run_config, started.isoformat(timespec="seconds"))
    json_path, md_path = write_result(result, args.out, name)
    print(f"{result['verdict']}\nwrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
