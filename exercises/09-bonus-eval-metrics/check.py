"""Check the bonus exercise: your metrics and curation pass test_genmetrics.py. Usage: check.py [--work DIR]."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import Report, parser, run_exercise_tests

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
    run_exercise_tests(
        report,
        module,
        HERE / "test_genmetrics.py",
        "NotImplementedError means a TODO is still there; see the README for the formulas.",
    )
    report.finish()


if __name__ == "__main__":
    main()
