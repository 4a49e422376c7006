"""Guardrails over HTTP: one uvicorn worker, 1,000-character checks, the path the gateway takes.

    .venv/bin/python bench/guardrails_http.py [--seconds 8]   # writes bench/results/guardrails_http.{json,md}

Targets (issue 13): input check p99 <= 10 ms at 1,000 characters, >= 300 checks/s per worker.
- latency: `hey -c 1 -q 50` (one connection, 50 requests/s evenly spaced: well below saturation, so the
  figure is the service's cost, not queueing);
- throughput: `wrk -t 1 -c 10` closed loop (saturation; its latencies are queueing and are not reported);
- CPU per check: the worker's own CPU time (utime + stime from /proc) over the wrk phase, divided by the
  checks it answered. On a shared machine the checks/s figure is what the worker got of the cores; the CPU
  per check is what a check costs, and 1,000 / (CPU ms per check) is the rate one free core would sustain.
Both are Go/C clients (Debian packages `hey`, `wrk`); without them the Python client of bench/loadgen.py
runs instead and the result file says so (it shares the 2 cores with the service: lower figures).
Scenarios: the single-text form (default policy), the per-request messages form (5 messages, 1,000
characters in all), and the strict policy, which also runs the NER model for names and places. The
verdict cache is off (every request is the same body; with it on, the figures would be the cache's).
`http_bench()` is what other benches call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "libs")]

from bench import loadgen  # noqa: E402
from bench.common import percentile, versions, write_result  # noqa: E402

TOKEN = "bench-guardrails-token"
# Ordinary prose without PII or attacks: the common case the budget is about.
PARAGRAPH = (
    "The library opens at nine on weekdays and at ten on Saturdays. Members can borrow up to twelve books "
    "for three weeks, and renew them twice online unless another reader has reserved them. The reading room "
    "on the second floor is quiet; group study rooms can be booked a week ahead at the front desk. Wireless "
    "access is free, printing costs a few cents per page, and the scanner next to the stairs sends files by "
    "e-mail. Children's events take place every Wednesday afternoon, with stories, crafts and a short film. "
    "Could you summarise these opening rules in three bullet points for a newsletter, and suggest a friendly "
    "title that would make families want to visit during the school holidays? Keep it under eighty words. "
    "Please also add one sentence about the new evening hours on Thursdays, which start next month."
)


def text_of(chars: int) -> str:
    """`chars` characters of the paragraph, repeated as needed."""
    return (PARAGRAPH * (chars // len(PARAGRAPH) + 1))[:chars]


def scenarios() -> dict[str, tuple[str, dict[str, Any]]]:
    """Path and request body of each scenario."""
    text = text_of(1000)
    parts = [text[i : i + 200] for i in range(0, 1000, 200)]
    roles = ["system", "user", "assistant", "tool", "user"]
    answer = "The library opens at nine on weekdays and at ten on Saturdays. " * 16
    return {
        "input: text, default policy": ("/v1/check/input", {"text": text}),
        "input: 5 messages (1,000 chars in all), default policy": (
            "/v1/check/input",
            {"messages": [{"role": r, "content": p} for r, p in zip(roles, parts, strict=True)]},
        ),
        "input: text, strict policy (adds NER: names, places)": ("/v1/check/input", {"text": text, "policy": "strict"}),
        "output: 1k answer + 4k context (groundedness), default policy": (
            "/v1/check/output",
            {"text": answer[:1000], "context": [text_of(4000)]},
        ),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hey(url: str, body: Path, seconds: int) -> dict[str, Any]:
    args = ["hey", "-z", f"{seconds}s", "-c", "1", "-q", "50", "-m", "POST", "-T", "application/json", "-o", "csv"]
    run = subprocess.run(
        [*args, "-H", f"Authorization: Bearer {TOKEN}", "-D", str(body), url],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )  # fmt: skip
    # Every response's time (csv), so the percentiles hold however few requests a slow scenario made.
    rows = [line.split(",") for line in run.stdout.splitlines()[1:] if line.strip()]
    ms = [float(r[0]) * 1000 for r in rows]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[6]] = statuses.get(r[6], 0) + 1
    return {
        "tool": "hey -c 1 -q 50",
        "requests": len(ms),
        **{f"p{q}_ms": round(percentile(ms, q), 2) if ms else None for q in (50, 90, 99)},
        "status_codes": statuses,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, body: Path, seconds: int, pid: int | None = None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
            f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        )
    try:
        cpu_before = _cpu_seconds(pid) if pid else None
        run = subprocess.run(
            ["wrk", "-t", "1", "-c", "10", "-d", f"{seconds}s", "-s", script.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )  # fmt: skip
        cpu = _cpu_seconds(pid) - cpu_before if pid and cpu_before is not None else None
    finally:
        os.unlink(script.name)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", run.stdout)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", run.stdout)
    total = re.search(r"(\d+) requests in", run.stdout)
    requests = int(total.group(1)) if total else None
    return {
        "tool": "wrk -t 1 -c 10 (closed loop)",
        "requests_per_s": float(rps.group(1)) if rps else None,
        "requests": requests,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "worker_cpu_ms_per_check": round(cpu * 1000 / requests, 3) if cpu is not None and requests else None,
    }


def _python_client(port: int, path: str, payload: bytes, seconds: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    request = loadgen.build_request("127.0.0.1", port, path, payload, headers)
    fixed = asyncio.run(loadgen.fixed_rate("127.0.0.1", port, request, 1, 50, seconds))
    closed = asyncio.run(loadgen.closed_loop("127.0.0.1", port, request, 10, seconds))
    ms = [x * 1000 for x in fixed.latencies]
    return {
        "latency": {
            "tool": "bench/loadgen.py fixed rate, 1 connection, 50/s",
            **{f"p{q}_ms": round(percentile(ms, q), 2) for q in (50, 90, 99)},
            "status_codes": fixed.statuses,
        },
        "throughput": {
            "tool": "bench/loadgen.py closed loop, 10 connections",
            "requests_per_s": round(len(closed.latencies) / seconds, 1),
            "errors": closed.errors,
        },
    }


def http_bench(seconds: int = 8) -> dict[str, Any]:
    """Start one worker, run every scenario, stop it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'libs'}", "GUARDRAILS_SERVICE_TOKEN": TOKEN}
    # Every request here is the same body: with the verdict cache on, this would measure the cache.
    env["GUARDRAILS_VERDICT_CACHE_SIZE"] = "0"
    env.pop("GUARDRAILS_DEV_MODE", None)
    cmd = [sys.executable, "-m", "uvicorn", "services.guardrails.app:create_app", "--factory", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tools = shutil.which("hey") is not None and shutil.which("wrk") is not None
    out: dict[str, Any] = {"clients": "hey + wrk" if tools else "python (bench/loadgen.py): hey/wrk not installed"}
    try:
        _wait_ready(port)
        for name, (path, body) in scenarios().items():
            url = f"http://127.0.0.1:{port}{path}"
            payload = json.dumps(body).encode()
            if not tools:
                out[name] = _python_client(port, path, payload, seconds)
                continue
            with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
                f.write(payload)
            try:
                out[name] = {
                    "latency": _hey(url, Path(f.name), seconds),
                    "throughput": _wrk(url, Path(f.name), seconds, proc.pid),
                }
            finally:
                os.unlink(f.name)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return out


def _wait_ready(port: int, timeout_s: float = 120) -> None:
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in conn.recv(200):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"guardrails did not become ready on port {port}")


def markdown(r: dict[str, Any]) -> str:
    """The summary table."""
    lines = [
        f"Clients: {r['clients']}. One uvicorn worker, 1,000 characters per check, service token on, "
        f"verdict cache off (every check reads its text). Load average (1/5/15 min, {os.cpu_count()} cores) before "
        f"the run: {r.get('load_average_1_5_15')}, after: {r.get('load_average_after')}.\n",
        "| scenario | p50 ms | p90 ms | p99 ms (50 req/s, 1 connection) | checks/s (closed loop, 10 connections) "
        "| worker CPU ms per check | checks/s one free core sustains (1000 / CPU ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in r["scenarios"].items():
        lat, thr = s["latency"], s["throughput"]
        cpu = thr.get("worker_cpu_ms_per_check")
        per_core = round(1000 / cpu) if cpu else None
        lines.append(
            f"| {name} | {lat['p50_ms']} | {lat['p90_ms']} | {lat['p99_ms']} | {thr['requests_per_s']} | {cpu} "
            f"| {per_core} |"
        )
    lines.append(
        "\nTargets (issue 13): input p99 <= 10 ms and >= 300 checks/s per worker, default policy; "
        "output with context p99 <= 50 ms."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="duration of each phase")
    args = parser.parse_args()
    # Shared machines: the load before the run says how much of the 2 cores the service really had.
    load = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {"versions": versions("uvicorn", "fastapi", "spacy"), "load_average_1_5_15": load}
    result["scenarios"] = http_bench(args.seconds)
    result["clients"] = result["scenarios"].pop("clients")
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    path = write_result("guardrails_http", result, markdown(result))
    print(markdown(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
