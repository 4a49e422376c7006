"""Batch throughput vs. the same requests sent online, through one gateway and the real inference service.

In one run, alternating rounds: online (N requests, C at a time, closed loop) and batch (the same N as one batch,
worker concurrency C), with the order flipped every round (online-batch, batch-online, ...), so a shared machine
that gets busier or quieter during the run does not favour either side. Throughput = all requests / all wall time
of that side. Target: batch >= 90% of online throughput.
The client is Python (httpx) on the same cores as the system under test; it only waits on I/O.
Run: `python bench/batch_throughput.py --rounds 4 --requests 12 --concurrency 4`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import percentile, versions, write_result
from tests.support.servers import uvicorn_service

MODEL = "smollm2-135m-instruct"
ADMIN = "bench-admin"


def body(max_tokens: int) -> dict:
    """One short, deterministic request (identical for every line, so both sides do the same work)."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


async def online(url: str, key: str, n: int, concurrency: int, max_tokens: int) -> dict:
    """N requests, `concurrency` in flight (closed loop); wall time from first send to last answer."""
    headers = {"authorization": f"Bearer {key}"}
    latencies: list[float] = []
    tokens = errors = 0
    todo = iter(range(n))
    payload = orjson.dumps(body(max_tokens))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:

        async def loop() -> None:
            nonlocal tokens, errors
            for _ in todo:
                t0 = time.perf_counter()
                response = await client.post("/v1/chat/completions", content=payload)
                latencies.append(time.perf_counter() - t0)
                if response.status_code == 200:
                    tokens += response.json()["usage"]["completion_tokens"]
                else:
                    errors += 1
                    if errors == 1:
                        print("online error:", response.status_code, response.text[:300], file=sys.stderr)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 3),
        "completion_tokens_per_s": round(tokens / wall, 2),
        "errors": errors,
        "p50_latency_s": round(percentile(latencies, 50), 3),
    }


def batch(url: str, key: str, n: int, max_tokens: int, poll_s: float) -> dict:
    """The same N requests as one batch; wall time from create to the poll that sees it completed."""
    headers = {"authorization": f"Bearer {key}"}
    lines = b"".join(
        orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body(max_tokens)})
        + b"\n"
        for i in range(n)
    )
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        uploaded = client.post(
            "/v1/files", files={"file": ("bench.jsonl", io.BytesIO(lines))}, data={"purpose": "batch"}
        )
        if uploaded.status_code != 200:
            raise SystemExit(f"upload failed: {uploaded.status_code} {uploaded.text}")
        file_id = uploaded.json()["id"]
        started = time.perf_counter()
        created = client.post(
            "/v1/batches",
            json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        ).json()
        while True:
            state = client.get(f"/v1/batches/{created['id']}").json()
            if state["status"] in ("completed", "failed", "expired", "cancelled"):
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - started
        output = client.get(f"/v1/files/{state['output_file_id']}/content").content.splitlines()
    tokens = sum(orjson.loads(x)["response"]["body"]["usage"]["completion_tokens"] for x in output)
    return {
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 3),
        "completion_tokens_per_s": round(tokens / wall, 2),
        "errors": state["request_counts"]["failed"],
        "status": state["status"],
    }


def main() -> None:
    """Start the inference service and a gateway, run the three phases, write bench/results/batch_throughput.*."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=12, help="requests per phase of a round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds (each: one online phase, one batch)")
    parser.add_argument("--concurrency", type=int, default=4, help="online concurrency = batch worker concurrency")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--app", default=os.environ.get("LLMOPS_GATEWAY_APP", "services.gateway.app:create_app"))
    args = parser.parse_args()
    # A timeout's SIGTERM must still stop the services this script started (the with-blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    poll_s = 0.1
    name = secrets.token_hex(3)
    with tempfile.TemporaryDirectory() as tmp:
        inf_env = {
            "INFERENCE_MAX_RUNNING": "2",
            "INFERENCE_MAX_QUEUED": "64",
            "INFERENCE_PARALLEL_SLOTS": "2",
            "INFERENCE_DEV_MODE": "true",  # no service token on the benchmark's loopback
        }
        with uvicorn_service("services.inference.app:create_app", inf_env, log_path=Path(tmp) / "inf.log") as inf:
            routes = Path(tmp) / "routes.yaml"
            deployment = {"name": "local", "url": inf + "/v1", "model": MODEL}
            price = {"input_per_1m": 0.1, "output_per_1m": 0.2}
            routes.write_text(
                yaml.safe_dump({"models": [{"name": MODEL, "price": price, "deployments": [deployment]}]})
            )
            gw_env = {
                "GATEWAY_ADMIN_KEY": ADMIN,
                "GATEWAY_ROUTES_FILE": str(routes),
                "GATEWAY_REDIS_PREFIX": f"batchbench:{name}:gw",
                "GATEWAY_EVENTS_STREAM": f"batchbench:{name}:events",
                "GATEWAY_BATCH_CONCURRENCY": str(args.concurrency),
                "GATEWAY_BATCH_POLL_S": str(poll_s),
            }
            try:
                with uvicorn_service(args.app, gw_env, log_path=Path(tmp) / "gw.log") as url:
                    admin = {"authorization": f"Bearer {ADMIN}"}
                    # Own prefix outside `bench:*`: other benchmarks clean that namespace when they finish.
                    httpx.post(url + "/admin/teams", headers=admin, json={"team": "bench"}).raise_for_status()
                    key = httpx.post(url + "/admin/keys", headers=admin, json={"team": "bench"}).json()["key"]
                    asyncio.run(online(url, key, 4 * args.concurrency, args.concurrency, args.max_tokens))  # warm
                    rounds = []
                    for r in range(args.rounds):
                        phases = {}
                        for side in ("online", "batch") if r % 2 == 0 else ("batch", "online"):
                            if side == "online":
                                phases[side] = asyncio.run(
                                    online(url, key, args.requests, args.concurrency, args.max_tokens)
                                )
                            else:
                                phases[side] = batch(url, key, args.requests, args.max_tokens, poll_s)
                        rounds.append(phases)
                        print(f"round {r + 1}: {phases}", file=sys.stderr)
            finally:
                import redis

                client = redis.Redis()
                for k in client.scan_iter(match=f"batchbench:{name}:*", count=1000):
                    client.delete(k)
    total = {
        side: {
            "requests": args.requests * args.rounds,
            "wall_s": round(sum(r[side]["wall_s"] for r in rounds), 3),
            "errors": sum(r[side]["errors"] for r in rounds),
        }
        for side in ("online", "batch")
    }
    for side in total:
        total[side]["requests_per_s"] = round(total[side]["requests"] / total[side]["wall_s"], 4)
    ratio = total["batch"]["requests_per_s"] / total["online"]["requests_per_s"]
    result = {
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "rounds_detail": rounds,
        "total": total,
        "batch_over_online": round(ratio, 3),
        "target": ">= 0.90",
        "meets_target": ratio >= 0.9,
        "notes": "real SmolLM2-135M via llama.cpp (inference service, 2 slots); Python httpx client on the same "
        f"cores; batch wall time includes the status poll ({poll_s}s) and worker poll ({poll_s}s) granularity.",
        "versions": versions("fastapi", "uvicorn", "redis", "httpx", "xllamacpp"),
    }
    md = (
        f"{args.rounds} rounds of N={args.requests} identical chat requests (max_tokens={args.max_tokens}) online "
        f"(concurrency {args.concurrency}) and as one batch (worker concurrency {args.concurrency}), order "
        "alternating per round; one gateway in front of the real inference service.\n\n"
        "| round | online wall s | online req/s | batch wall s | batch req/s |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {i + 1} | {r['online']['wall_s']} | {r['online']['requests_per_s']} | {r['batch']['wall_s']} "
            f"| {r['batch']['requests_per_s']} |\n"
            for i, r in enumerate(rounds)
        )
        + f"| **total** | {total['online']['wall_s']} | {total['online']['requests_per_s']} | "
        f"{total['batch']['wall_s']} | {total['batch']['requests_per_s']} |\n"
        + f"\nBatch / online throughput: **{ratio:.1%}** (target >= 90%); errors online "
        f"{total['online']['errors']}, batch {total['batch']['errors']}.\n"
    )
    path = write_result("batch_throughput", result, md)
    print(path.read_text())


if __name__ == "__main__":
    main()
