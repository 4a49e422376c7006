"""Issue 12, rows 1, 8 and 12, at service level: MLflow behind authentication, drift between MLflow and the audit
log (moved aliases, rewritten or forged tags) refused and recorded, the audit chain anchored, registration
input validated, four-eyes on principals, eval evidence from platform runs, demo tokens only in dev mode; the real
caller as `created_by` of a dataset feedback registers for them, and only feedback may name one.

Tests that tamper with MLflow put it back before they end: the session's MLflow is shared by the suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select, text

from services.registry.store import audit_log
from services.registry.tests.conftest import (
    EVALUATOR_TOKEN,
    FEEDBACK_TOKEN,
    MLFLOW_READER,
    Caller,
    RegistryServer,
    add_admin,
    eval_run,
    unique,
)
from services.registry.tests.test_contract import error_code, model_body, promote

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.integration,  # needs a real MLflow server (a subprocess)
]


@pytest.fixture(scope="module")
def mlflow(registry_server: RegistryServer) -> MlflowClient:
    """MLflow's own client with the admin's credentials: the insider who goes behind the registry's back."""
    return MlflowClient(tracking_uri=registry_server.mlflow_url, registry_uri=registry_server.mlflow_url)


def tamper_count(http: httpx.Client) -> float:
    """Sum of llmops_registry_tamper_detected_total over its labels."""
    text_ = http.get("/metrics").text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text_)
        if fam.name == "llmops_registry_tamper_detected"
        for s in fam.samples
        if s.name.endswith("_total")
    )


@contextmanager
def production_model(people: dict[str, Caller]) -> Iterator[str]:
    """A model with v1 (served, price 0.1) in production and an unapproved v2 (price 0)."""
    member = people["member"].http
    name = unique("tamper")
    assert member.post(f"/v1/models/{name}/versions", json=model_body()).status_code == 201
    cheap = model_body(price_per_1m_input=0, price_per_1m_output=0)
    assert member.post(f"/v1/models/{name}/versions", json=cheap).status_code == 201
    promote(people, "model", name, "production", "1")
    yield name


def test_row1_mlflow_refuses_anonymous_and_non_admin_alias_moves(registry_server: RegistryServer) -> None:
    """Row 1: without credentials MLflow answers 401 to every API call; a non-admin user cannot move an alias."""
    api = registry_server.mlflow_url + "/api/2.0/mlflow"
    move = {"name": "smollm2-135m-instruct", "alias": "production", "version": "1"}
    assert httpx.post(f"{api}/registered-models/alias", json=move).status_code == 401
    assert httpx.get(f"{api}/registered-models/search").status_code == 401
    assert httpx.get(f"{api}/registered-models/search", auth=("admin", "password1234")).status_code == 401
    assert httpx.get(registry_server.mlflow_url + "/health").status_code == 200
    reader = httpx.post(f"{api}/registered-models/alias", json=move, auth=MLFLOW_READER)
    assert reader.status_code in (403, 404), reader.text


def test_row1_alias_moved_behind_the_registry_is_refused_counted_and_recorded(
    people: dict[str, Caller], mlflow: MlflowClient
) -> None:
    """Row 1: an alias moved with MLflow admin credentials is not served, alerts, and lands in the audit log."""
    viewer = people["viewer"].http
    with production_model(people) as name:
        before = tamper_count(viewer)
        mlflow.set_registered_model_alias(name, "production", "2")
        try:
            refused = viewer.get(f"/v1/models/{name}/aliases/production")
            assert refused.status_code == 409 and error_code(refused) == "tamper_detected", refused.text
            assert refused.json()["error"]["findings"][0]["kind"] == "alias_moved"
            assert name not in [m["name"] for m in viewer.get("/v1/catalogue").json()["models"]]
            assert tamper_count(viewer) == before + 1  # once per finding, not once per request
            entries = viewer.get("/v1/audit", params={"object_id": f"model/{name}"}).json()
            assert entries[-1]["action"] == "tamper.detected" and entries[-1]["actor"] == "system:drift"
            verify = viewer.get("/v1/audit/verify").json()
            assert verify["ok"] is False and any(d["object_id"] == f"model/{name}" for d in verify["drift"])
            # A promotion cannot build on the tampered state either.
            req = people["member"].http.post("/v1/promotions", json={
                "object_type": "model", "name": name, "alias": "staging", "version": "1", "reason": "x"})  # fmt: skip
            approve = people["reviewer"].http.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "ok"})
            assert approve.status_code == 409 and error_code(approve) == "tamper_detected"
        finally:
            mlflow.set_registered_model_alias(name, "production", "1")
        assert viewer.get(f"/v1/models/{name}/aliases/production").json()["version"] == "1"


def test_row1_rewritten_price_tag_is_refused(people: dict[str, Caller], mlflow: MlflowClient) -> None:
    """Row 1: a governance tag (the price) rewritten in MLflow makes the version unservable."""
    viewer = people["viewer"].http
    with production_model(people) as name:
        mlflow.set_model_version_tag(name, "1", "llmops.price.input_per_1m", "0.0")
        try:
            refused = viewer.get(f"/v1/models/{name}/aliases/production")
            assert refused.status_code == 409 and "price_per_1m_input" in refused.json()["error"]["message"]
        finally:
            mlflow.set_model_version_tag(name, "1", "llmops.price.input_per_1m", "0.1")
        assert viewer.get(f"/v1/models/{name}/aliases/production").status_code == 200


def test_row1_forged_audit_tag_fails_verify(people: dict[str, Caller], mlflow: MlflowClient) -> None:
    """Row 1: an `llmops.audit.*` tag written in MLflow (a forged approval) is detected by verify and resolve."""
    viewer = people["viewer"].http
    with production_model(people) as name:
        forged = '{"action": "promotion.approve", "actor": "demo-reviewer", "after": {"alias": "production"}}'
        mlflow.set_registered_model_tag(name, "llmops.audit.999999", forged)
        try:
            verify = viewer.get("/v1/audit/verify").json()
            assert verify["ok"] is False
            assert {"object_id": f"model/{name}", "kind": "forged_audit_tag"} in [
                {k: d[k] for k in ("object_id", "kind")} for d in verify["drift"]
            ]
            assert viewer.get(f"/v1/models/{name}/aliases/production").status_code == 409
        finally:
            mlflow.delete_registered_model_tag(name, "llmops.audit.999999")
        assert viewer.get("/v1/audit/verify").json()["ok"] is True


def test_row1_model_created_in_mlflow_is_not_served(people: dict[str, Caller], mlflow: MlflowClient) -> None:
    """Row 1: a model registered straight in MLflow, with `production` (file:///etc/passwd, price 0), is ignored."""
    name = unique("rogue")
    mlflow.create_registered_model(name)
    try:
        mv = mlflow.create_model_version(name, "s3://bucket/rogue", tags={"llmops.artifact_uri": "file:///etc/passwd"})
        mlflow.set_registered_model_alias(name, "production", mv.version)
        viewer = people["viewer"].http
        assert name not in [m["name"] for m in viewer.get("/v1/catalogue").json()["models"]]
        assert error_code(viewer.get(f"/v1/models/{name}/aliases/production")) == "tamper_detected"
    finally:
        mlflow.delete_registered_model(name)


def test_row1_registration_validates_artifact_uri_and_prices(people: dict[str, Caller]) -> None:
    """Row 1: file:// outside the artifact roots, unknown schemes and non-finite prices are refused (400)."""
    member = people["member"].http
    name = unique("val")
    for uri in ("file:///etc/passwd", "file:///tmp/../etc/shadow", "gopher://x/y", "file://host/share/m.gguf"):
        bad = member.post(f"/v1/models/{name}/versions", json=model_body(artifact_uri=uri))
        assert bad.status_code == 400 and error_code(bad) == "invalid_artifact_uri", (uri, bad.text)
    body = model_body()
    raw = (
        httpx.Request("POST", "/", json=body)
        .content.decode()
        .replace('"price_per_1m_input":0.1', '"price_per_1m_input":1e309')
    )
    assert "1e309" in raw
    inf = member.post(f"/v1/models/{name}/versions", content=raw, headers={"content-type": "application/json"})
    assert inf.status_code == 400, inf.text
    assert member.post(f"/v1/models/{name}/versions", json=model_body(price_per_1m_output=-0.5)).status_code == 400
    assert member.get(f"/v1/models/{name}/versions").status_code == 404


def test_row12_audit_tail_truncation_is_detected(people: dict[str, Caller], registry_server: RegistryServer) -> None:
    """Row 12: deleting the newest audit entries is caught by the anchored head."""
    viewer, admin = people["viewer"].http, people["admin"].http
    # The newest entry is about a policy (mirrored onto the governance experiment, not onto a served object, so
    # only the anchor can notice it is gone; a model's entry would also leave its `llmops.audit.*` tag orphaned).
    policy = unique("trunc")
    assert admin.put(f"/v1/policies/{policy}", json={"object_type": "model", "name_pattern": policy}).status_code == 200
    assert viewer.get("/v1/audit/verify").json()["ok"] is True
    engine = create_engine(registry_server.database_url)
    with engine.begin() as conn:
        last = dict(conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).mappings().one())
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": last["seq"]})
    try:
        result = viewer.get("/v1/audit/verify").json()
        assert result["ok"] is False and "truncated" in result["problem"] and result["first_bad_seq"] == last["seq"]
    finally:
        with engine.begin() as conn:
            conn.execute(audit_log.insert().values(**last))
        engine.dispose()
    assert viewer.get("/v1/audit/verify").json()["ok"] is True
    assert admin.delete(f"/v1/policies/{policy}").status_code == 204


def test_row12_new_principal_needs_a_second_older_admin(
    people: dict[str, Caller], registry_server: RegistryServer, request: pytest.FixtureRequest
) -> None:
    """Row 12: an admin's new reviewer is inactive until a different admin, created before the request, approves."""
    admin, admin2 = people["admin"].http, people["admin2"].http
    name = unique("sock")
    created = admin.post("/v1/principals", json={"name": name, "role": "reviewer", "reason": "my reviewer"})
    assert created.status_code == 202 and created.json()["status"] == "pending", created.text
    token, rid = created.json()["token"], created.json()["request_id"]
    sock = httpx.Client(base_url=str(admin.base_url), headers={"authorization": f"Bearer {token}"})
    request.addfinalizer(sock.close)
    assert sock.get("/v1/whoami").status_code == 401  # not active yet
    own = admin.post(f"/v1/principal-requests/{rid}/approve", json={"reason": "me"})
    assert own.status_code == 403 and error_code(own) == "self_approval"
    late_name, late_token = unique("late-admin"), "late-admin-token-" + unique("t")
    add_admin(registry_server.database_url, late_name, late_token)  # an admin that appears after the request
    late = httpx.post(f"{admin.base_url}/v1/principal-requests/{rid}/approve", json={"reason": "ok"},
                      headers={"authorization": f"Bearer {late_token}"})  # fmt: skip
    assert late.status_code == 403 and error_code(late) == "approver_too_new"
    ok = admin2.post(f"/v1/principal-requests/{rid}/approve", json={"reason": "known colleague"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved" and ok.json()["decided_by"] == "admin2"
    assert sock.get("/v1/whoami").json()["role"] == "reviewer"
    actions = [e["action"] for e in admin.get("/v1/audit", params={"object_id": f"principal/{name}"}).json()]
    assert actions == ["principal.create.request", "principal.create.approve"]
    # The new reviewer existed only after this request was filed, so it cannot approve it (the sock puppet).
    mname = unique("m")
    people["member"].http.post(f"/v1/models/{mname}/versions", json=model_body())
    early = admin.post("/v1/promotions", json={"object_type": "model", "name": mname, "alias": "staging",
                                               "version": "1", "reason": "mine"})  # fmt: skip
    name2 = unique("sock2")
    c2 = admin.post("/v1/principals", json={"name": name2, "role": "reviewer"}).json()
    admin2.post(f"/v1/principal-requests/{c2['request_id']}/approve", json={"reason": "ok"})
    puppet = httpx.post(f"{admin.base_url}/v1/promotions/{early.json()['id']}/approve", json={"reason": "ok"},
                        headers={"authorization": f"Bearer {c2['token']}"})  # fmt: skip
    assert puppet.status_code == 403 and error_code(puppet) == "approver_too_new"


def test_row12_elevation_needs_a_second_admin(people: dict[str, Caller], request: pytest.FixtureRequest) -> None:
    """Row 12: raising a role is a request; lowering is immediate; both are audited."""
    admin, admin2 = people["admin"].http, people["admin2"].http
    name = unique("elev")
    c = admin.post("/v1/principals", json={"name": name, "role": "member"}).json()
    admin2.post(f"/v1/principal-requests/{c['request_id']}/approve", json={"reason": "ok"})
    me = httpx.Client(base_url=str(admin.base_url), headers={"authorization": f"Bearer {c['token']}"})
    request.addfinalizer(me.close)
    up = admin.post(f"/v1/principals/{name}/role", json={"role": "admin"})
    assert up.status_code == 202 and up.json()["status"] == "pending"
    assert me.get("/v1/whoami").json()["role"] == "member"
    assert (
        admin.post(f"/v1/principal-requests/{up.json()['request_id']}/approve", json={"reason": "x"}).status_code == 403
    )
    assert (
        admin2.post(f"/v1/principal-requests/{up.json()['request_id']}/approve", json={"reason": "y"}).status_code
        == 200
    )
    assert me.get("/v1/whoami").json()["role"] == "admin"
    down = admin.post(f"/v1/principals/{name}/role", json={"role": "read-only"})
    assert down.status_code == 200 and me.get("/v1/whoami").json()["role"] == "read-only"


def test_row12_eval_results_must_come_from_a_platform_run(
    people: dict[str, Caller], registry_server: RegistryServer
) -> None:
    """Row 12: a run without the evaluator tag, for another model, or unknown, is refused as evidence."""
    member = people["member"].http
    name = unique("ev")
    member.post(f"/v1/models/{name}/versions", json=model_body())
    url = registry_server.mlflow_url
    cases = {
        "untrusted_eval_run": eval_run(url, name, {"eval_pass_rate": 1.0}, evaluator=None),
        "untrusted_eval_run ": eval_run(url, name, {"eval_pass_rate": 1.0}, evaluator="me"),
        # Any MLflow user can tag a run of its own experiment "rag": only runs in rag's experiment count.
        "untrusted_eval_run  ": eval_run(url, name, {"eval_pass_rate": 1.0}, experiment=unique("forged")),
        "eval_run_mismatch": eval_run(url, unique("other"), {"eval_pass_rate": 1.0}),
        "eval_run_mismatch ": eval_run(url, name, {"eval_pass_rate": 1.0}, version="7"),
        "unknown_run": "0" * 32,
    }
    for code, run_id in cases.items():
        bad = member.post(f"/v1/models/{name}/versions/1/evals", json={"run_id": run_id})
        assert bad.status_code == 400 and error_code(bad) == code.strip(), (code, bad.text)
    assert member.get(f"/v1/models/{name}/versions/1").json()["eval_evidence"] == {}


def test_row12_evaluators_record_runs_through_the_registry(people: dict[str, Caller], base_url: str) -> None:
    """Row 12: an evaluator without MLflow credentials records its run through the registry; a member cannot."""
    member = people["member"].http
    name = unique("evr")
    member.post(f"/v1/models/{name}/versions", json=model_body())
    body = {"model": name, "version": "1", "metrics": {"eval_pass_rate": 0.93}, "params": {"dataset": "loso"}}
    assert member.post("/v1/evaluations", json=body).status_code == 401  # a principal is not an evaluator
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {EVALUATOR_TOKEN}"}) as ev:
        assert ev.post("/v1/evaluations", json=body | {"model": unique("nope")}).status_code == 404
        recorded = ev.post("/v1/evaluations", json=body)
    assert recorded.status_code == 201 and recorded.json()["evaluator"] == "guardrails", recorded.text
    evidence = member.post(f"/v1/models/{name}/versions/1/evals", json={"run_id": recorded.json()["run_id"]})
    assert evidence.status_code == 200
    assert evidence.json()["eval_evidence"]["eval_pass_rate"]["evaluator"] == "guardrails"


def test_row12_demo_tokens_are_dead_outside_dev_mode(
    people: dict[str, Caller], registry_server: RegistryServer
) -> None:
    """Row 12: a store seeded in dev mode, served without it: `demo-member-token` is refused."""
    add_admin(registry_server.database_url, "demo-member", "demo-member-token", role="member")  # as a dev seed made it
    assert (
        people["anon"].http.get("/v1/whoami", headers={"authorization": "Bearer demo-member-token"}).status_code == 401
    )
    assert people["anon"].http.get("/v1/whoami", headers={"authorization": "Bearer dev-admin-token"}).status_code == 401


def test_anonymous_audit_reads_show_no_principals(people: dict[str, Caller]) -> None:
    """Anonymous reads: who holds which role is for callers with a token."""
    anon = people["anon"].http.get("/v1/audit", params={"object_type": "principal"}).json()
    assert anon == []
    assert people["viewer"].http.get("/v1/audit", params={"object_type": "principal"}).json() != []


def test_row8_feedback_registers_datasets_for_the_real_caller_and_nobody_else_can(
    people: dict[str, Caller], base_url: str, mlflow: MlflowClient
) -> None:
    """Row 8: a dataset feedback registers shows its real caller as `created_by` (not feedback's own principal);
    an ordinary principal naming someone else is refused, and feedback's token does nothing else."""
    member = people["member"].http
    body = {"digest": "sha256:" + "ab" * 32, "schema": {"messages": "list"}, "row_count": 2, "source": "s3://b/k"}
    name = unique("onbehalf")
    spoof = member.post(f"/v1/datasets/{name}/versions", json=body, headers={"x-llmops-on-behalf-of": "t9/p/k9"})
    assert (spoof.status_code, error_code(spoof)) == (403, "on_behalf_not_allowed"), spoof.text
    with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {FEEDBACK_TOKEN}"}) as feedback:
        missing = feedback.post(f"/v1/datasets/{name}/versions", json=body)
        assert (missing.status_code, error_code(missing)) == (400, "invalid_on_behalf_of")
        made = feedback.post(
            f"/v1/datasets/{name}/versions", json=body, headers={"x-llmops-on-behalf-of": "team-a/proj/key_123"}
        )
        assert made.status_code == 201, made.text
        assert made.json()["created_by"] == "team-a/proj/key_123"
        assert feedback.post("/v1/models/x/versions", json=model_body()).status_code == 401  # datasets only
        assert feedback.get("/v1/whoami").status_code == 401
    run = mlflow.get_run(made.json()["mlflow_run_id"])
    assert run.data.tags["llmops.created_by"] == "team-a/proj/key_123"
    assert run.data.tags["llmops.registered_via"] == "service:feedback"
    entries = people["admin"].http.get("/v1/audit", params={"object_id": f"dataset/{name}/1"}).json()
    entry = next(e for e in entries if e["object_id"] == f"dataset/{name}/1")
    assert entry["actor"] == "team-a/proj/key_123" and "service:feedback" in entry["reason"]
    plain = member.post(f"/v1/datasets/{unique('plain')}/versions", json=body)
    assert plain.json()["created_by"] == people["member"].name  # a principal's own registration is unchanged
