"""Benchmark of the trace event pipeline: Redis stream -> feedback consumer -> store.

Two figures per store backend (SQLite file, PostgreSQL):
  1. persisted throughput: N events already in the stream, the consumer starts, time until all are committed;
  2. end-to-end lag at a fixed arrival rate (default 500 events/s, spread evenly, from a separate emitter process
     that XADDs like the gateway): lag = commit-and-ack time minus the event's `ts`, p50/p99/max.

The consumer is the service's own StreamConsumer and Store (the code the service runs), in this process;
the emitter is a Python process on the same 2 cores, so it competes with the system under test.

    .venv/bin/python bench/feedback_pipeline.py [--events 20000] [--rate 500] [--seconds 20] [--no-postgres]
Writes bench/results/feedback_pipeline-<UTC date>.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "libs")]

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psycopg  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from redis import Redis as SyncRedis  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from services.feedback.consumer import StreamConsumer  # noqa: E402
from services.feedback.events import TraceEvent  # noqa: E402
from services.feedback.metrics import FeedbackMetrics  # noqa: E402
from services.feedback.rules import LabelRules  # noqa: E402
from services.feedback.store.store import Store  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/3"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def event(i: int, ts: float) -> dict[str, Any]:
    """A realistic event (~1 KB): a short chat, an answer, one guardrail result, no retrieval."""
    return {
        "schema": 1,
        "request_id": f"bench-{uuid.uuid4().hex}",
        "trace_id": uuid.uuid4().hex,
        "ts": ts,
        "team": f"team-{i % 4}",
        "project": "bench",
        "key_id": f"key-{i % 16}",
        "model": "smollm2-135m-instruct",
        "model_version": "1",
        "deployment": "default",
        "prompt_version": None,
        "endpoint": "chat",
        "status": 200,
        "error_code": None,
        "prompt_tokens": 42,
        "completion_tokens": 96,
        "cost_usd": 0.00012,
        "latency_ms": 812.5,
        "ttft_ms": 95.1,
        "stream": i % 2 == 0,
        "guardrails": [{"stage": "input", "decision": "allow", "findings": []}],
        "retrieval": [],
        "prompt": [
            {"role": "system", "content": "You are a helpful support assistant for a SaaS product."},
            {"role": "user", "content": f"How do I reset the password of account {i}? I tried twice already."},
        ],
        "response": "To reset your password, open Settings > Security, choose 'Reset password' and follow the link "
        "we email you. The link expires after 30 minutes. " * 3,
        "mean_logprob": -0.42,
    }


def emitter(stream: str, rate: float, seconds: float, start_at: float) -> None:
    """Separate process: XADD at a fixed arrival rate in 10 ms ticks, `ts` stamped at send time."""
    r = SyncRedis.from_url(REDIS_URL)
    tick, sent, i = 0.01, 0, 0
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.time()
    while (now := time.time()) < t0 + seconds:
        due = int((now - t0) * rate) - sent
        if due > 0:
            pipe = r.pipeline(transaction=False)
            for _ in range(due):
                pipe.xadd(stream, {"event": orjson.dumps(event(i, time.time()))}, maxlen=1_000_000, approximate=True)
                i += 1
            pipe.execute()
            sent += due
        time.sleep(tick)
    rest = int(rate * seconds) - sent  # the last tick's share, so exactly rate * seconds events are sent
    if rest > 0:
        pipe = r.pipeline(transaction=False)
        for _ in range(rest):
            pipe.xadd(stream, {"event": orjson.dumps(event(i, time.time()))}, maxlen=1_000_000, approximate=True)
            i += 1
        pipe.execute()
    r.close()


async def fresh_store(kind: str, tmp: Path) -> tuple[Store, Any]:
    """An empty store of the given kind, and a cleanup callable."""
    if kind == "sqlite":
        store = Store.from_settings(None, tmp / f"bench-{uuid.uuid4().hex}.db")
        await store.open()
        return store, lambda: None
    name = f"feedback_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    store = Store.from_settings(f"postgresql://postgres@127.0.0.1:5432/{name}", tmp)
    await store.open()

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")

    return store, drop


def consumer_for(redis: Redis, store: Store, stream: str, on_stored: Any) -> StreamConsumer:
    """The service's consumer with its default batch size."""
    return StreamConsumer(
        redis,
        store,
        FeedbackMetrics(CollectorRegistry()),
        LabelRules(0.3, -1.5),
        stream_key=stream,
        group="feedback",
        name="bench",
        batch_size=500,
        block_ms=200,
        on_stored=on_stored,
    )


async def throughput(kind: str, n: int, tmp: Path) -> dict[str, Any]:
    """Events/s persisted when a backlog of n events is drained."""
    redis, stream = Redis.from_url(REDIS_URL), f"bench:feedback:{uuid.uuid4().hex}"
    sync = SyncRedis.from_url(REDIS_URL)
    for start in range(0, n, 1000):
        pipe = sync.pipeline(transaction=False)
        for i in range(start, min(start + 1000, n)):
            pipe.xadd(stream, {"event": orjson.dumps(event(i, time.time()))})
        pipe.execute()
    store, cleanup = await fresh_store(kind, tmp)
    done = asyncio.Event()
    count = 0

    async def on_stored(events: list[TraceEvent]) -> None:
        nonlocal count
        count += len(events)
        if count >= n:
            done.set()

    consumer = consumer_for(redis, store, stream, on_stored)
    t0 = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - t0
    consumer.stop()
    await task
    rows = await store.read(lambda db: db.query("SELECT COUNT(*) AS n FROM requests"))
    await store.close()
    cleanup()
    await redis.delete(stream)
    await redis.aclose()
    sync.close()
    return {
        "events": n,
        "stored": int(rows[0]["n"]),
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed, 1),
    }


async def lag(kind: str, rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    """Lag percentiles at a fixed arrival rate."""
    redis, stream = Redis.from_url(REDIS_URL), f"bench:feedback:{uuid.uuid4().hex}"
    store, cleanup = await fresh_store(kind, tmp)
    lags: list[float] = []

    async def on_stored(events: list[TraceEvent]) -> None:
        now = time.time()
        lags.extend(now - ev.ts for ev in events)

    consumer = consumer_for(redis, store, stream, on_stored)
    await consumer.ensure_group()
    task = asyncio.create_task(consumer.run())
    start_at = time.time() + 1.0
    proc = mp.get_context("spawn").Process(target=emitter, args=(stream, rate, seconds, start_at))
    proc.start()
    expected = int(rate * seconds)
    while proc.is_alive() or len(lags) < expected:
        await asyncio.sleep(0.05)
        if not proc.is_alive() and time.time() > start_at + seconds + 30:
            break
    proc.join()
    consumer.stop()
    await task
    await store.close()
    cleanup()
    await redis.delete(stream)
    await redis.aclose()
    arr = np.array(lags)
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "events": len(lags),
        "expected": expected,
        "lag_p50_ms": round(float(np.percentile(arr, 50)) * 1000, 1),
        "lag_p99_ms": round(float(np.percentile(arr, 99)) * 1000, 1),
        "lag_max_ms": round(float(arr.max()) * 1000, 1),
    }


async def main() -> None:
    """Run both figures on each backend and write the result files."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    kinds = ["sqlite"] if args.no_postgres else ["sqlite", "postgresql"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            results[kind] = {
                "throughput": await throughput(kind, args.events, Path(tmp)),
                "lag": await lag(kind, args.rate, args.seconds, Path(tmp)),
            }
            print(kind, json.dumps(results[kind]), flush=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    redis_version = SyncRedis.from_url(REDIS_URL).info("server")["redis_version"]
    with psycopg.connect(PG_ADMIN) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    report = {
        "benchmark": "feedback event pipeline",
        "date_utc": stamp,
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "versions": {
            "redis_server": redis_version,
            "postgresql": pg_version,
            "redis_py": version("redis"),
            "psycopg": version("psycopg"),
            "sqlite": __import__("sqlite3").sqlite_version,
        },
        "notes": "Consumer = services.feedback StreamConsumer + Store in one process; emitter = separate Python "
        "process on the same 2 shared cores. Targets: >= 2000 events/s persisted; lag p99 <= 1 s at 500/s.",
        "results": results,
    }
    out = ROOT / "bench" / "results" / f"feedback_pipeline-{stamp}"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines: list[str] = [
        f"# Feedback pipeline benchmark {stamp}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}",
        "",
        f"Versions: {report['versions']}",
        "",
        str(report["notes"]),
        "",
        "| store | persisted events/s | lag p50 ms | lag p99 ms | lag max ms | events at rate |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        lines.append(
            f"| {kind} | {r['throughput']['events_per_s']} | {r['lag']['lag_p50_ms']} | "
            f"{r['lag']['lag_p99_ms']} | {r['lag']['lag_max_ms']} | {r['lag']['events']}/{r['lag']['expected']} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json and .md")


if __name__ == "__main__":
    asyncio.run(main())
