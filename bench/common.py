"""Helpers shared by the benchmarks: machine description, percentiles, result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of the packages that matter for a benchmark."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def git_revision() -> str:
    """The commit the benchmark ran on."""
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(name: str, result: dict[str, Any], summary_md: str, results_dir: Path = RESULTS) -> Path:
    """Write bench/results/<name>.json and .md with the machine, date, versions and exact command (`results_dir`
    elsewhere: a bench run as a user who may not write the checkout)."""
    results_dir.mkdir(exist_ok=True)
    result = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_revision": git_revision(),
        "machine": machine(),
        **result,
    }
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    header = (
        f"# {name}\n\n- date: {result['date']}\n- command: `{result['command']}`\n"
        f"- revision: {result['git_revision']}\n"
        f"- machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
        f"{result['machine']['memory_gib']} GiB\n\n"
    )
    (results_dir / f"{name}.md").write_text(header + summary_md + "\n")
    return path
