"""Which approval policies cover a promotion, and what each of their rules says of the target version's evidence.

One function for both the approval (which refuses on a failure) and the dry run (`POST /v1/promotions/check`, which
only reports): a client that wants to know whether a version would pass asks the registry instead of re-implementing
the rules, so the two can never disagree.
"""

from __future__ import annotations

import fnmatch
from typing import Any


def _rule(
    policy: str, metric: str, bounds: dict[str, Any], evals: dict[str, float], reported: dict[str, float]
) -> dict:
    """One required metric of one policy against the version's evidence."""
    value = evals.get(metric)
    lo, hi = bounds.get("min"), bounds.get("max")
    out = {"policy": policy, "metric": metric, "min": lo, "max": hi, "value": value, "source": "evidence"}
    if value is None and metric in reported:
        # Only evidence counts: metrics the registry read itself from a platform evaluation run. Numbers a requester
        # posted are shown but cannot open a gate (issue 12, row 12).
        message = (
            f"{policy}: {metric}={reported[metric]} is self-reported; the policy needs it from a platform evaluation "
            "run (POST .../evals with its run_id)"
        )
        return out | {"value": reported[metric], "source": "self-reported", "passed": False, "message": message}
    if value is None:
        return out | {"source": "missing", "passed": False, "message": f"{policy}: eval result {metric!r} is missing"}
    if lo is not None and value < lo:
        return out | {"passed": False, "message": f"{policy}: {metric}={value} is below the minimum {lo}"}
    if hi is not None and value > hi:
        return out | {"passed": False, "message": f"{policy}: {metric}={value} is above the maximum {hi}"}
    return out | {"passed": True, "message": f"{policy}: {metric}={value} is within its bounds"}


def evaluate(
    policies: list[dict[str, Any]], object_type: str, name: str, alias: str, target: dict[str, Any]
) -> dict[str, Any]:
    """{policies: names that apply, passed, failures: messages, rules: one outcome per required metric, not_applied:
    policies of this object and alias that a version scope (`version_tags`) leaves out, with the reason}."""
    evals = {k: e["value"] for k, e in (target.get("eval_evidence") or {}).items()}
    reported = target.get("eval_results") or {}
    tags = target.get("tags") or {}
    applied: list[str] = []
    rules: list[dict[str, Any]] = []
    not_applied: list[dict[str, str]] = []
    for p in policies:
        if p["object_type"] != object_type or alias not in p["aliases"]:
            continue
        if not fnmatch.fnmatchcase(name, p["name_pattern"]):
            continue
        missing = {k: v for k, v in (p.get("version_tags") or {}).items() if tags.get(k) != v}
        if missing:  # scoped to other versions (e.g. finetune-gate: only fine-tuned ones)
            wanted = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
            not_applied.append({"policy": p["name"], "reason": f"the version does not carry {wanted}"})
            continue
        applied.append(p["name"])
        rules += [_rule(p["name"], m, b, evals, reported) for m, b in p["required_evals"].items()]
    failures = [r["message"] for r in rules if not r["passed"]]
    return {"policies": applied, "passed": not failures, "failures": failures, "rules": rules,
            "not_applied": not_applied}  # fmt: skip
