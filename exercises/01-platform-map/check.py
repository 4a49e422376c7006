"""Check exercise 1: work/answers.yaml maps each LLMOps concern to the code that implements it.

For every concern: the file exists, is one of the files that implement it, defines the named symbol, and the
MLOps comparison is filled in. Usage: check.py [--work DIR].
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import REPO, Report, parser

HERE = Path(__file__).resolve().parent
# Accepted files per concern (a concern often spans a few files; any of them is a right answer).
ACCEPTED = {
    "virtual_keys": ["services/gateway/keys.py", "services/gateway/admin.py"],
    "rate_limits_and_budgets": ["services/gateway/limits.py", "services/gateway/lua/admit.lua"],
    "cost_metering": ["services/gateway/pricing.py", "services/gateway/proxy.py", "services/gateway/catalogue.py"],
    "model_versions_and_aliases": ["services/registry/models.py", "services/registry/promotions.py"],
    "prompt_versions": ["services/registry/prompts.py", "services/rag/prompts.py"],
    "prompt_injection_defence": [
        "services/guardrails/detectors/injection.py",
        "services/guardrails/detectors/injection_rules.py",
        "services/guardrails/detectors/normalize.py",
    ],
    "trace_events": [
        "libs/llmops_common/trace_events.py",
        "services/gateway/proxy.py",
        "services/feedback/events.py",
        "services/feedback/consumer.py",
    ],
    "drift_detection": ["services/feedback/drift.py", "services/feedback/drift_monitor.py"],
}
HINTS = {
    "virtual_keys": "who is calling? the gateway's README lists its files",
    "rate_limits_and_budgets": "RPM, TPM and budgets are reserved atomically in Redis",
    "cost_metering": "prices per 1M tokens, money in nano-dollars",
    "model_versions_and_aliases": "services/registry/README.md, 'files'",
    "prompt_versions": "templates with {{variables}} live in the registry",
    "prompt_injection_defence": "services/guardrails/README.md, 'Detectors'",
    "trace_events": "one event per request into a Redis stream",
    "drift_detection": "services/feedback/README.md, 'Drift and anomalies'",
}


def defines(path: Path, symbol: str) -> bool:
    """Does the file define `symbol` (class, function, constant; for Lua/YAML files: mention it)?"""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return symbol in text
    return bool(
        re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(symbol)}\b|^{re.escape(symbol)}\s*[:=]", text, re.M)
    )


def main() -> None:
    """Check every concern's answer."""
    args = parser(__doc__ or "", HERE / "work").parse_args()
    report = Report("Exercise 1 - map LLMOps concerns to the platform's code")
    path = args.work.resolve() / "answers.yaml"
    if not report.check(path.exists(), f"{path} exists"):
        report.finish()
    try:
        answers = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        report.abort(f"answers.yaml is valid YAML: {exc}")
    for concern, files in ACCEPTED.items():
        entry = answers.get(concern) or {}
        file, symbol = str(entry.get("file", "")).strip(), str(entry.get("symbol", "")).strip()
        analogue = str(entry.get("mlops_analogue", "")).strip()
        target = REPO / file
        if not file or file == "TODO" or not target.is_file():
            report.fail(f"{concern}: file {file!r} exists in the repository", HINTS[concern])
            continue
        if not report.check(file in files, f"{concern}: {file} implements it", HINTS[concern]):
            continue
        report.check(
            symbol not in ("", "TODO") and defines(target, symbol),
            f"{concern}: {file} defines {symbol!r}",
            "name a class or function defined in that file (grep -n '^class\\|^def' " + file + ")",
        )
        report.check(
            analogue not in ("", "TODO") and len(analogue.split()) >= 2,
            f"{concern}: the MLOps comparison is filled in",
            "a few words: what plays this role in classic MLOps?",
        )
    report.finish()


if __name__ == "__main__":
    main()
