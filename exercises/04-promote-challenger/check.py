"""Check exercise 4: a challenger version reached `production` through an approved, four-eyes promotion, gated on
a platform evaluation run (evidence), not on numbers the requester posted.

Needs the running platform (`make up`). Usage: check.py [--model NAME] [--registry URL].
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import Report, http, parser, platform_env

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Ask the registry where `production` points and how it got there."""
    p = parser(__doc__ or "", HERE)
    p.add_argument("--model", default="smollm2-135m-instruct", help="registered model name")
    p.add_argument("--registry", default=None, help="registry URL (default: LLMOPS_REGISTRY_URL from .llmops/env)")
    args = p.parse_args()
    report = Report(f"Exercise 4 - promote a challenger of {args.model} to production")
    registry = args.registry or platform_env().get("LLMOPS_REGISTRY_URL", "http://127.0.0.1:8003")
    status, _ = http("GET", registry + "/readyz", timeout=5)
    if not report.check(status == 200, f"the registry answers at {registry}", "start the platform: make up"):
        report.finish()
    status, prod = http("GET", f"{registry}/v1/models/{args.model}/aliases/production")
    if not report.check(
        status == 200,
        f"{args.model}@production resolves",
        f"registry said {status}: {prod}\nregister the model first (see the README)",
    ):
        report.finish()
    version = str(prod["version"])
    report.info(f"production -> version {version} (artifact {prod.get('artifact_uri')})")
    status, versions = http("GET", f"{registry}/v1/models/{args.model}/versions")
    numbers = sorted(int(v["version"]) for v in versions) if status == 200 else []
    report.check(
        len(numbers) >= 2 and int(version) != numbers[0],
        f"production is a challenger, not the first version (versions: {numbers})",
        "register a new version (a different artifact_uri, e.g. with #challenger at the end) and promote it",
    )
    evidence = (prod.get("eval_evidence") or {}).get("eval_pass_rate") or {}
    report.check(
        float(evidence.get("value", 0)) >= 0.8,
        f"its eval_pass_rate is >= 0.8 from an evaluation run (got {evidence.get('value')}, run "
        f"{evidence.get('run_id')}, evaluator {evidence.get('evaluator')})",
        "record the evaluation with POST /v1/evaluations (evaluator token LLMOPS_EVALUATOR_TOKEN), then attach it: "
        'POST /v1/models/<name>/versions/<v>/evals {"run_id": ...}; numbers you post yourself do not count',
    )
    status, promos = http("GET", f"{registry}/v1/promotions?status=approved")
    mine = (
        [
            r
            for r in promos or []
            if r.get("object_type") == "model"
            and r.get("name") == args.model
            and r.get("alias") == "production"
            and str(r.get("version")) == version
        ]
        if status == 200
        else []
    )
    if report.check(
        bool(mine),
        f"an approved promotion request moved production to version {version}",
        "aliases move only through POST /v1/promotions + POST /v1/promotions/<id>/approve",
    ):
        req = mine[-1]
        report.check(
            req.get("requested_by") != req.get("decided_by"),
            f"four eyes: requested by {req.get('requested_by')}, approved by {req.get('decided_by')}",
        )
        report.check(bool(req.get("reason")), "the request gives a reason (it is in the audit log forever)")
    status, audit = http("GET", f"{registry}/v1/audit?object_id=model/{args.model}")
    actions = [e.get("action") for e in audit or []] if status == 200 else []
    report.check(
        "promotion.approve" in actions,
        "the audit log records the approval",
        f"GET /v1/audit?object_id=model/{args.model} shows: {actions}",
    )
    status, verify = http("GET", f"{registry}/v1/audit/verify")
    report.check(status == 200 and bool(verify.get("ok")), f"the audit chain verifies ({verify})")
    report.finish()


if __name__ == "__main__":
    main()
