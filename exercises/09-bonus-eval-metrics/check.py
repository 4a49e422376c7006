"""Check the bonus exercise.

Part 1 (offline): your metrics and curation pass test_genmetrics.py. Part 2 (`--loop`, needs `make up`): a
fine-tuned version of the served model passes the gates on evidence and reached production through an approved,
four-eyes promotion; its training run in MLflow is finished and logged the same gain the evidence says.

Usage: check.py [--work DIR] [--loop [--model NAME] [--registry URL] [--mlflow URL]].
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _checklib import Report, http, parser, platform_env

HERE = Path(__file__).resolve().parent
# The fine-tuning evidence a policy must gate on (finetune-gate, services/finetune/register.py); its thresholds are
# the registry's to apply.
FINETUNE_METRICS = {"finetune_task_exact_gain", "finetune_regression_ppl_ratio"}


def metrics_part(report: Report, work: Path) -> None:
    """Part 1: run the exercise's pytest file against the learner's module."""
    from _checklib import run_exercise_tests

    module = work.resolve() / "genmetrics.py"
    if report.check(module.exists(), f"{module} exists", "create it (start from exercises/09-bonus-eval-metrics/work)"):
        run_exercise_tests(
            report,
            module,
            HERE / "test_genmetrics.py",
            "NotImplementedError means a TODO is still there; see the README for the formulas.",
        )


def gate_verdict(registry: str, model: str, version: str) -> tuple[list[str], list[str]]:
    """(policies that apply to a production promotion of `version`, what fails), from the registry's own dry run
    (POST /v1/promotions/check): the rules, the evidence-only reading and the version scopes are the registry's, not
    a copy here. A version no policy gates on fine-tuning evidence fails too: passing nothing is not passing."""
    body = {"object_type": "model", "name": model, "alias": "production", "version": version}
    status, check = http("POST", f"{registry}/v1/promotions/check", body=body)
    if status != 200:
        return [], [f"the registry's dry run answered {status}: {str(check)[:300]}"]
    failures = list(check["failures"])
    gated = {r["metric"] for r in check["rules"]}
    missing = sorted(FINETUNE_METRICS - gated)
    if missing:
        skipped = "; ".join(f"{s['policy']}: {s['reason']}" for s in check.get("not_applied", []))
        failures.append(
            f"no policy gates this version on {', '.join(missing)} (make finetune creates finetune-gate with the "
            "admin token)" + (f"; not applied: {skipped}" if skipped else "")
        )
    return check["policies"], failures


def mlflow_run(url: str, run_id: str, user: str, password: str) -> tuple[int, Any]:
    """GET one MLflow run over its REST API with the learner's login (basic auth)."""
    request = urllib.request.Request(f"{url.rstrip('/')}/api/2.0/mlflow/runs/get?run_id={run_id}")
    if user:
        request.add_header("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())["run"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def loop_part(report: Report, model: str, registry: str | None, mlflow: str | None) -> None:
    """Part 2: the facts of a tuned version that shipped, from the registry and MLflow."""
    env = platform_env()
    registry = registry or env.get("LLMOPS_REGISTRY_URL", "http://127.0.0.1:8003")
    mlflow = mlflow or env.get("LLMOPS_MLFLOW_URL", "http://127.0.0.1:5000")
    if not report.check(
        http("GET", registry + "/readyz", timeout=5)[0] == 200,
        f"the registry answers at {registry}",
        "start the platform: make up",
    ):
        return
    status, versions = http("GET", f"{registry}/v1/models/{model}/versions")
    tuned = [v for v in versions or [] if (v.get("tags") or {}).get("finetuned") == "true"] if status == 200 else []
    if not report.check(
        bool(tuned),
        f"{model} has fine-tuned versions (finetuned=true, derived by the registry from the training lineage): "
        f"{[v['version'] for v in tuned]}",
        "run module 9's step 1: make finetune ARGS=...",
    ):
        return
    verdicts = {v["version"]: gate_verdict(registry, model, str(v["version"])) for v in tuned}
    for v in tuned:
        applied, failures = verdicts[v["version"]]
        report.info(
            f"version {v['version']} ({v['tags'].get('steps', '?')} steps, {v['tags'].get('lora', '')}): "
            + ("passes " + ", ".join(applied) if not failures else "; ".join(failures))
        )
    passing = [v for v in tuned if not verdicts[v["version"]][1]]
    if not report.check(
        bool(passing),
        "a fine-tuned version passes every production gate on evidence",
        "change the training (more --steps, --lr, --batch-size, --rank, or more/better rows in the dataset) and run "
        "make finetune again; the gates count only results the evaluator recorded (make finetune does that)",
    ):
        return
    best = passing[-1]
    version = str(best["version"])
    _, approved = http("GET", f"{registry}/v1/promotions?status=approved&name={model}")
    moved = [
        r
        for r in approved or []
        if r.get("object_type") == "model"
        and r.get("alias") == "production"
        and str(r.get("version")) in {str(v["version"]) for v in passing}
    ]
    if report.check(
        bool(moved),
        "an approved promotion put a passing fine-tuned version in production",
        f"request production for version {version} as the member and approve it as the reviewer (module 9, steps 2-3)",
    ):
        req = moved[0]
        version = str(req["version"])
        best = next(v for v in passing if str(v["version"]) == version)
        report.check(
            req.get("requested_by") != req.get("decided_by"),
            f"four eyes: requested by {req.get('requested_by')}, approved by {req.get('decided_by')}",
        )
    run_id = (best.get("tags") or {}).get("training_run_id", "")
    status, run = mlflow_run(
        mlflow, run_id, env.get("LLMOPS_MLFLOW_USERNAME", "viewer"), env.get("LLMOPS_MLFLOW_PASSWORD", "")
    )
    if report.check(
        status == 200 and run.get("info", {}).get("status") == "FINISHED",
        f"version {version}'s training run {run_id or '(no training_run_id tag)'} is a finished MLflow run",
        f"MLflow said {status}: {str(run)[:200]}",
    ):
        logged = {m["key"]: m["value"] for m in run.get("data", {}).get("metrics", [])}
        claimed = best["eval_evidence"]["finetune_task_exact_gain"]["value"]
        got = logged.get("finetune_task_exact_gain")
        report.check(
            got is not None and abs(got - claimed) < 1e-9,
            f"the run logged the same task gain as the evidence ({got} vs {claimed})",
            "the evidence must come from the evaluation of this training run",
        )


def main() -> None:
    """Part 1 always; part 2 with --loop."""
    p = parser(__doc__ or "", HERE / "work")
    p.add_argument("--loop", action="store_true", help="also check part 2 (the fine-tuning loop; needs make up)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="registered model name (part 2)")
    p.add_argument("--registry", default=None, help="registry URL (default: LLMOPS_REGISTRY_URL)")
    p.add_argument("--mlflow", default=None, help="MLflow URL (default: LLMOPS_MLFLOW_URL)")
    p.add_argument("--skip-metrics", action="store_true", help="part 2 only")
    args = p.parse_args()
    report = Report("Bonus exercise - generative metrics, dataset curation and a tuned model that ships")
    if not args.skip_metrics:
        metrics_part(report, args.work)
    if args.loop:
        loop_part(report, args.model, args.registry, args.mlflow)
    report.finish()


if __name__ == "__main__":
    main()
