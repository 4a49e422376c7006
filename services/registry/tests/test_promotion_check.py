"""The promotion dry run (`POST /v1/promotions/check`) and the `finetuned` tag the registry derives from lineage.

Against the session's registry (a real MLflow server), like test_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.registry.tests.conftest import Caller, eval_run, unique
from services.registry.tests.test_contract import error_code, mlflow_url_or_skip, model_body

pytestmark = pytest.mark.integration

GATE = {"eval_pass_rate": {"min": 0.8}, "finetune_regression_ppl_ratio": {"max": 1.05}}


def target(name: str, version: str = "1", alias: str = "production") -> dict[str, str]:
    return {"object_type": "model", "name": name, "alias": alias, "version": version}


@pytest.fixture
def gated(people: dict[str, Caller]) -> Iterator[str]:
    """A model with one version and a policy of its own on two metrics (deleted afterwards)."""
    admin = people["admin"].http
    name = unique("dry")
    policy = {"object_type": "model", "name_pattern": name, "aliases": ["production"], "required_evals": GATE}
    assert admin.put(f"/v1/policies/dry-{name}", json=policy).status_code == 200
    body = model_body(eval_results={"eval_pass_rate": 0.95})  # self-reported: shown, never enough
    assert people["member"].http.post(f"/v1/models/{name}/versions", json=body).status_code == 201
    yield name
    assert admin.delete(f"/v1/policies/dry-{name}").status_code == 204


def evidence(people: dict[str, Caller], request: pytest.FixtureRequest, name: str, metrics: dict[str, float]) -> None:
    run_id = eval_run(mlflow_url_or_skip(request, "evidence for the dry run"), name, metrics)
    attached = people["member"].http.post(f"/v1/models/{name}/versions/1/evals", json={"run_id": run_id})
    assert attached.status_code == 200, attached.text


def rules_of(check: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {r["metric"]: r for r in check["rules"] if r["policy"] == f"dry-{name}"}


def test_a_failing_version_is_reported_rule_by_rule_and_nothing_is_filed(
    people: dict[str, Caller], request: pytest.FixtureRequest, gated: str
) -> None:
    viewer = people["viewer"].http  # read-only: the dry run reads what a reader may read, and writes nothing
    evidence(people, request, gated, {"finetune_regression_ppl_ratio": 1.2})
    got = viewer.post("/v1/promotions/check", json=target(gated))
    assert got.status_code == 200, got.text
    check = got.json()
    assert check["passed"] is False and f"dry-{gated}" in check["policies"]
    assert check["current_version"] is None and check["version"] == "1"
    rules = rules_of(check, gated)
    assert rules["eval_pass_rate"] | {"message": ""} == {
        "policy": f"dry-{gated}", "metric": "eval_pass_rate", "min": 0.8, "max": None, "value": 0.95,
        "source": "self-reported", "passed": False, "message": ""}  # fmt: skip
    assert rules["finetune_regression_ppl_ratio"]["source"] == "evidence"
    assert rules["finetune_regression_ppl_ratio"]["passed"] is False
    assert f"dry-{gated}: finetune_regression_ppl_ratio=1.2 is above the maximum 1.05" in check["failures"]
    # The approval says the same: file the request as a member, the reviewer's approval is refused on those rules.
    req = people["member"].http.post("/v1/promotions", json=target(gated) | {"reason": "x"})
    assert req.status_code == 201 and req.json()["policy_check"]["failures"] == check["failures"], req.text
    # A dry run filed nothing: the only request for this model is the one just made.
    assert [r["id"] for r in viewer.get("/v1/promotions", params={"name": gated}).json()] == [req.json()["id"]]
    refused = people["reviewer"].http.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "x"})
    assert refused.status_code == 422 and error_code(refused) == "policy_not_met"


def test_a_passing_version_passes_every_rule(
    people: dict[str, Caller], request: pytest.FixtureRequest, gated: str
) -> None:
    evidence(people, request, gated, {"eval_pass_rate": 0.9, "finetune_regression_ppl_ratio": 0.97})
    check = people["anon"].http.post("/v1/promotions/check", json=target(gated)).json()  # anonymous reads are on
    assert check["passed"] is True and check["failures"] == [], check
    rules = rules_of(check, gated)
    outcomes = {m: (r["value"], r["source"], r["passed"]) for m, r in rules.items()}
    assert outcomes == {
        "eval_pass_rate": (0.9, "evidence", True),
        "finetune_regression_ppl_ratio": (0.97, "evidence", True),
    }
    # Another alias: this policy does not cover it.
    other = people["anon"].http.post("/v1/promotions/check", json=target(gated, alias="staging")).json()
    assert f"dry-{gated}" not in other["policies"] and rules_of(other, gated) == {}


def test_unknown_targets_and_bad_callers(people: dict[str, Caller], gated: str) -> None:
    viewer = people["viewer"].http
    missing = viewer.post("/v1/promotions/check", json=target(gated, version="42"))
    assert (missing.status_code, error_code(missing)) == (404, "version_not_found")
    model = viewer.post("/v1/promotions/check", json=target(unique("nope")))
    assert (model.status_code, error_code(model)) == (404, "model_not_found")
    bad = viewer.post("/v1/promotions/check", json=target(gated) | {"reason": "a dry run has none"})
    assert (bad.status_code, error_code(bad)) == (400, "invalid_request"), bad.text
    forged = people["anon"].http.post(
        "/v1/promotions/check", json=target(gated), headers={"authorization": "Bearer not-a-token"}
    )
    assert forged.status_code == 401 and error_code(forged)


def test_the_finetuned_tag_is_the_registrys_not_the_registrants(people: dict[str, Caller]) -> None:
    """Hostile registrant: a fine-tuned model registered without `finetuned=true` (or with `false`) would escape a
    gate scoped to fine-tuned versions. The registry refuses the tag and derives it from the lineage instead."""
    admin, member = people["admin"].http, people["member"].http
    name = unique("spoof")
    dataset = {"digest": "sha256:" + "cd" * 32, "schema": {"messages": "list"}, "row_count": 3, "source": "s3://b/k"}
    assert member.post(f"/v1/datasets/{name}-rows/versions", json=dataset).status_code == 201
    for spoof in ({"finetuned": "false"}, {"finetuned": "true"}):
        refused = member.post(f"/v1/models/{name}/versions", json=model_body(tags=spoof))
        assert refused.status_code == 400 and "derived by the registry" in refused.text, refused.text
    plain = member.post(f"/v1/models/{name}/versions", json=model_body()).json()
    trained = member.post(  # no finetuned tag at all, but trained on a registered dataset
        f"/v1/models/{name}/versions", json=model_body(datasets=[{"name": f"{name}-rows", "version": 1}])
    ).json()
    claimed = member.post(f"/v1/models/{name}/versions", json=model_body(tags={"base_artifact": "pypi://x/y"})).json()
    assert "finetuned" not in plain["tags"]
    assert trained["tags"]["finetuned"] == "true" and claimed["tags"]["finetuned"] == "true"
    gate = {
        "object_type": "model",
        "name_pattern": name,
        "aliases": ["production"],
        "version_tags": {"finetuned": "true"},
        "required_evals": {"finetune_task_exact_gain": {"min": 0.01}},
    }
    assert admin.put(f"/v1/policies/ft-{name}", json=gate).status_code == 200
    try:
        checks = {
            v["version"]: member.post("/v1/promotions/check", json=target(name, v["version"])).json()
            for v in (plain, trained, claimed)
        }
        assert f"ft-{name}" in checks[trained["version"]]["policies"]
        assert f"ft-{name}" in checks[claimed["version"]]["policies"]
        assert f"ft-{name}" not in checks[plain["version"]]["policies"]
        assert {"policy": f"ft-{name}", "reason": "the version does not carry finetuned=true"} in checks[
            plain["version"]
        ]["not_applied"]
    finally:
        assert admin.delete(f"/v1/policies/ft-{name}").status_code == 204
