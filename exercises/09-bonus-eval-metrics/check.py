"""Check the bonus exercise: your metrics and curation pass test_genmetrics.py. Usage: check.py [--work DIR]."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import REPO, Report, parser

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run the exercise's pytest file against the learner's module."""
    args = parser(__doc__ or "", HERE / "work").parse_args()
    report = Report("Bonus exercise - generative metrics and dataset curation")
    module = args.work.resolve() / "genmetrics.py"
    if not report.check(
        module.exists(), f"{module} exists", "create it (start from exercises/09-bonus-eval-metrics/work)"
    ):
        report.finish()
    env = {**os.environ, "EXERCISE_MODULE": str(module), "PYTHONPATH": f"{REPO}:{REPO / 'libs'}"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE / "test_genmetrics.py"),
        "-q",
        "-p",
        "no:cacheprovider",
        "--no-header",
        "-o",
        "addopts=",
        "--rootdir",
        str(HERE),
    ]
    result = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith("FAILED")]
    summary = lines[-1] if lines else result.stderr.strip()[-300:]
    if result.returncode == 0:
        report.ok(f"test_genmetrics.py: {summary}")
    else:
        shown = "\n".join(failed[:6]) or summary
        report.fail(
            f"test_genmetrics.py: {summary}",
            "failing tests (run them yourself: EXERCISE_MODULE=" + str(module) + " .venv/bin/python -m pytest "
            "exercises/09-bonus-eval-metrics/test_genmetrics.py -q):\n"
            + shown
            + "\nNotImplementedError means a TODO is still there; see the README for the formulas.",
        )
    report.finish()


if __name__ == "__main__":
    main()
