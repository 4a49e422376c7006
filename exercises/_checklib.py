"""Shared helpers of the exercise check scripts: PASS/FAIL reporting, paths, the platform's env file, HTTP.

Every check prints one line per criterion and ends with `PASS` or `FAIL` (exit status 0 or 1), so
`make check-exercise N=...` tells a learner at a glance whether their work is right and what to do next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV_FILE = REPO / ".llmops" / "env"


@dataclass
class Report:
    """Collects criteria; `finish()` prints the verdict and exits."""

    title: str
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        print(f"== {self.title}")

    def ok(self, what: str) -> None:
        """A criterion that holds."""
        print(f"  ok    {what}")

    def fail(self, what: str, hint: str = "") -> None:
        """A criterion that does not hold, with what to do about it."""
        self.failures.append(what)
        print(f"  FAIL  {what}")
        if hint:
            for line in hint.strip().splitlines():
                print(f"        hint: {line}")

    def info(self, what: str) -> None:
        """Something worth knowing that does not decide the verdict."""
        print(f"  info  {what}")

    def check(self, condition: bool, what: str, hint: str = "") -> bool:
        """ok() or fail() depending on `condition`; returns it."""
        (self.ok if condition else lambda w: self.fail(w, hint))(what)
        return condition

    def finish(self) -> None:
        """Print the verdict and exit with 0 (PASS) or 1 (FAIL)."""
        if self.failures:
            print(f"FAIL: {len(self.failures)} of the criteria above do not hold yet.")
            sys.exit(1)
        print("PASS")
        sys.exit(0)

    def abort(self, what: str, hint: str = "") -> None:
        """Fail now (the remaining criteria cannot be checked)."""
        self.fail(what, hint)
        self.finish()


def parser(description: str, default_work: Path) -> argparse.ArgumentParser:
    """The common command line: `--work DIR` says where the learner's files are."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--work", type=Path, default=default_work, help=f"folder with your work (default {default_work})")
    return p


def platform_env() -> dict[str, str]:
    """LLMOPS_* from the environment, else from .llmops/env (written by `make up`)."""
    env: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip()
    env.update({k: v for k, v in os.environ.items() if k.startswith("LLMOPS_")})
    return env


def mlflow_login(env: dict[str, str] | None = None) -> None:
    """Hand the learner's MLflow login from .llmops/env to the mlflow library (MLflow answers 401 without one).

    The `viewer` user reads everything and writes only the experiments it creates (the registry is MLflow's only
    admin). Variables already set in the environment win."""
    env = platform_env() if env is None else env
    for ours, theirs in (
        ("LLMOPS_MLFLOW_USERNAME", "MLFLOW_TRACKING_USERNAME"),
        ("LLMOPS_MLFLOW_PASSWORD", "MLFLOW_TRACKING_PASSWORD"),
    ):
        if env.get(ours):
            os.environ.setdefault(theirs, env[ours])


def http(method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
    """One JSON call; returns (status, parsed body). Status 0 means nothing answered."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def reachable(url: str) -> bool:
    """Does something answer 200 on this URL (a /readyz)?"""
    return http("GET", url, timeout=3)[0] == 200


def run_exercise_tests(report: Report, module: Path, test_file: Path, hint: str) -> None:
    """Run an exercise's pytest file against the learner's module (EXERCISE_MODULE); report the outcome."""
    here = test_file.parent
    env = {**os.environ, "EXERCISE_MODULE": str(module), "PYTHONPATH": f"{REPO}:{REPO / 'libs'}"}
    cmd = [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider", "--no-header"]
    cmd += ["-o", "addopts=", "--rootdir", str(here)]
    result = subprocess.run(cmd, env=env, cwd=here, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith("FAILED")]
    summary = lines[-1] if lines else result.stderr.strip()[-300:]
    if result.returncode == 0:
        report.ok(f"{test_file.name}: {summary}")
        return
    shown = "\n".join(failed[:6]) or summary
    report.fail(
        f"{test_file.name}: {summary}",
        f"failing tests (run them yourself: EXERCISE_MODULE={module} .venv/bin/python -m pytest "
        f"{test_file.relative_to(REPO)} -q):\n{shown}\n{hint}",
    )
