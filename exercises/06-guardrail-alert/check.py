"""Check exercise 6: the alert LlmopsGuardrailBlockRateHigh in work/alerts.yml, with promtool.

`promtool check rules` validates the file; `promtool test rules alerts.test.yml` replays synthetic series
(an attack, normal traffic, noisy output checks) and compares the alerts that fire. Usage: check.py [--work DIR].
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import Report, parser

HERE = Path(__file__).resolve().parent
ALERT = "LlmopsGuardrailBlockRateHigh"
METRIC = "llmops_gateway_guardrail_checks_total"


def main() -> None:
    """Validate and unit-test the learner's alert rule."""
    args = parser(__doc__ or "", HERE / "work").parse_args()
    report = Report("Exercise 6 - an alert on guardrail blocks")
    rules_file = args.work.resolve() / "alerts.yml"
    promtool = shutil.which("promtool")
    if not promtool:
        report.abort("promtool is installed", "Debian/Ubuntu: sudo apt-get install prometheus (promtool comes with it)")
    if not report.check(rules_file.exists(), f"{rules_file} exists"):
        report.finish()
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    if not report.check(
        result.returncode == 0,
        "promtool check rules: the file is valid",
        (result.stdout + result.stderr).strip()[-800:],
    ):
        report.finish()
    doc = yaml.safe_load(rules_file.read_text()) or {}
    rules = [r for g in doc.get("groups") or [] for r in g.get("rules") or []]
    rule = next((r for r in rules if r.get("alert") == ALERT), None)
    if not report.check(rule is not None, f"an alert named {ALERT}", "add `- alert: LlmopsGuardrailBlockRateHigh`"):
        report.finish()
    report.check(METRIC in rule.get("expr", ""), f"its expr uses {METRIC}", "see services/gateway/metrics.py")
    report.check(
        bool((rule.get("annotations") or {}).get("summary")),
        "it has a `summary` annotation",
        "whoever is paged reads it first: say what happened in one line",
    )
    # promtool compares annotations exactly; the test file only pins labels, so annotations are dropped here.
    for r in rules:
        r.pop("annotations", None)
    with tempfile.TemporaryDirectory() as tmp:
        stripped = Path(tmp) / "alerts.yml"
        stripped.write_text(yaml.safe_dump(doc))
        tests = Path(tmp) / "alerts.test.yml"
        tests.write_text((HERE / "alerts.test.yml").read_text().replace("RULES_FILE", str(stripped)))
        result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    out = (result.stdout + result.stderr).strip()
    report.check(
        result.returncode == 0,
        "promtool test rules alerts.test.yml: fires on an attack (with severity=warning) "
        "after `for: 5m`, not on 5% blocks nor on output blocks",
        "promtool says:\n" + "\n".join(out.splitlines()[-25:]),
    )
    report.finish()


if __name__ == "__main__":
    main()
