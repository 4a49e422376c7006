"""Independent load generators for the benchmarks: `wrk` (closed loop, saturation) and `hey` (fixed rate).

Both are C/Go programs from Debian (`apt-get install wrk hey`), so their own cost per request is far below
the Python load generator's (bench/loadgen.py) and a saturation figure is the server's, not the client's.
Each function returns None when its tool is not installed: the benchmark then reports the in-repo figures only.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.common import percentile

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"non2xx\\": %d, \\"socket_errors\\": %d, "
    .. "\\"p50_us\\": %d, \\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def tools() -> dict[str, str | None]:
    """Which generators are installed, with their version line."""
    out: dict[str, str | None] = {"wrk": None, "hey": None}
    if shutil.which("wrk"):
        run = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
        out["wrk"] = (run.stdout or run.stderr).splitlines()[0].strip()
    if shutil.which("hey"):
        out["hey"] = "hey (Debian package; it has no --version)"
    return out


def wrk(url: str, body: bytes, key: str | None, connections: int, seconds: float) -> dict[str, Any] | None:
    """Closed loop over `connections` keep-alive connections, one thread: 2xx answers/s, p50/p99, errors."""
    if not shutil.which("wrk"):
        return None
    auth = f'wrk.headers["Authorization"] = {_lua_string("Bearer " + key)}' if key else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_SCRIPT.format(body=_lua_string(body.decode()), auth=auth))
        script = fh.name
    try:
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", script, url]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    finally:
        Path(script).unlink(missing_ok=True)
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("JSON "))
    raw = json.loads(line[5:])
    return {
        "connections": connections,
        "rps": round((raw["requests"] - raw["non2xx"]) / (raw["duration_us"] / 1e6), 1),  # 2xx answers per second
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "non2xx": raw["non2xx"],
        "socket_errors": raw["socket_errors"],
    }


def hey(url: str, body: bytes, key: str | None, connections: int, rate: float, seconds: float) -> dict[str, Any] | None:
    """`rate` requests/s in total over `connections` workers (hey -q is per worker): p50/p99 from every request."""
    if not shutil.which("hey"):
        return None
    cmd = ["hey", "-z", f"{max(1, round(seconds))}s", "-c", str(connections), "-q", f"{rate / connections:g}"]
    cmd += ["-m", "POST", "-T", "application/json", "-d", body.decode(), "-o", "csv"]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    run = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    latencies = [float(r["response-time"]) for r in rows]
    errors = sum(r["status-code"] != "200" for r in rows)
    return {
        "connections": connections,
        "rate_rps": rate,
        "requests": len(rows),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "errors": errors,
    }
