"""Unit tests without network: the audit chain, the TTL cache, schema validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from services.registry.audit import AuditLog
from services.registry.cache import TTLCache
from services.registry.schemas import DatasetVersionCreate, ModelVersionCreate
from services.registry.store import Store


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(Store(f"sqlite:///{tmp_path / 'audit.db'}"))


def _write(audit: AuditLog, n: int) -> list[dict]:
    entries = []
    for i in range(n):
        with audit.store.transaction() as conn:
            entries.append(
                audit.append(
                    conn,
                    actor="a",
                    action="x.y",
                    object_type="model",
                    object_id=f"model/m/{i}",
                    before={"v": i},
                    after={"v": i + 1},
                )
            )
    return entries


def test_chain_links_each_entry_to_the_previous(audit: AuditLog) -> None:
    entries = _write(audit, 3)
    assert entries[0]["prev_hash"] == "0" * 64
    assert entries[1]["prev_hash"] == entries[0]["hash"] and entries[2]["prev_hash"] == entries[1]["hash"]
    assert audit.verify() == {
        "ok": True,
        "entries": 3,
        "first_bad_seq": None,
        "problem": None,
        "head_hash": entries[2]["hash"],
        "anchor": {"seq": 3, "hash": entries[2]["hash"]},
    }


def test_verify_finds_a_truncated_tail_and_a_forged_anchor(tmp_path: Path) -> None:
    """Issue 12, row 12: deleting the newest entries is caught by the head anchored in the store; with a key,
    rewriting the anchor too is caught by its signature."""
    audit = AuditLog(Store(f"sqlite:///{tmp_path / 'anchored.db'}"), key="k" * 32)
    entries = _write(audit, 4)
    with audit.store.transaction() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    truncated = audit.verify()
    assert truncated["ok"] is False and "truncated" in truncated["problem"] and truncated["first_bad_seq"] == 4
    with audit.store.transaction() as conn:  # the thorough forger moves the anchor back as well
        conn.execute(text("UPDATE audit_head SET seq = 3, hash = :h"), {"h": entries[2]["hash"]})
    forged = audit.verify()
    assert forged["ok"] is False and forged["problem"] == "anchor signature mismatch"


def test_verify_finds_edits_and_deletions(audit: AuditLog) -> None:
    _write(audit, 4)
    with audit.store.transaction() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    assert audit.verify()["first_bad_seq"] == 2
    with audit.store.transaction() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'a' WHERE seq = 2"))
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    result = audit.verify()
    assert result["ok"] is False and result["first_bad_seq"] == 4


def test_failed_transaction_appends_nothing(audit: AuditLog) -> None:
    with pytest.raises(RuntimeError), audit.store.transaction() as conn:
        audit.append(conn, actor="a", action="x", object_type="model", object_id="model/m")
        raise RuntimeError("boom")
    assert audit.verify()["entries"] == 0


def test_query_filters_by_object_prefix_and_time(audit: AuditLog) -> None:
    entries = _write(audit, 3)
    assert len(audit.query(object_id="model/m")) == 3
    assert [e["seq"] for e in audit.query(object_id="model/m/1")] == [2]
    assert audit.query(since=entries[-1]["ts"] + 1) == []
    assert [e["seq"] for e in audit.query(after_seq=1, limit=1)] == [2]


def test_ttl_cache_expiry_invalidation_and_disable(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("services.registry.cache.time.monotonic", lambda: now[0])
    cache = TTLCache(5)
    cache.put(("model", "a", "alias", "production"), 1)
    cache.put(("model", "b", "alias", "production"), 2)
    assert cache.get(("model", "a", "alias", "production")) == 1
    cache.invalidate(("model", "a"))
    assert cache.get(("model", "a", "alias", "production")) is None
    assert cache.get(("model", "b", "alias", "production")) == 2
    now[0] += 6
    assert cache.get(("model", "b", "alias", "production")) is None
    off = TTLCache(0)
    off.put("k", 1)
    assert off.get("k") is None


def test_schemas_refuse_malformed_metadata() -> None:
    good = {
        "format": "gguf",
        "artifact_uri": "hf://org/model",
        "engine": "vllm",
        "context_length": 4096,
        "license": "mit",
        "price_per_1m_input": 0,
        "price_per_1m_output": 0,
    }
    ModelVersionCreate(**good)
    for bad in (
        {"engine": "tgi"},
        {"eval_results": {"bad name": 1.0}},
        {"tags": {"mlflow.x": "y"}},
        {"price_per_1m_output": "cheap"},
    ):
        with pytest.raises(ValidationError):
            ModelVersionCreate(**(good | bad))
    with pytest.raises(ValidationError):
        DatasetVersionCreate(digest="sha256:xyz", schema={"a": "int"}, row_count=1, source="s3://b/k")


def test_query_by_object_matches_its_children_exactly(audit: AuditLog) -> None:
    for object_id in ("model/my_model", "model/my_model/1", "model/myXmodel/1", "model/MY_MODEL/2", "model/my_model2"):
        with audit.store.transaction() as conn:
            audit.append(conn, actor="a", action="x.y", object_type="model", object_id=object_id)
    found = [e["object_id"] for e in audit.query(object_id="model/my_model")]
    # `_` is not a wildcard, case matters, and a longer name is another object.
    assert found == ["model/my_model", "model/my_model/1"]


def test_mlflow_auth_store_holds_exactly_the_configured_users(tmp_path: Path) -> None:
    """Issue 12, row 1: the registry is MLflow's only admin; its password follows the setting; any other user
    (an old `admin/password1234`, one created by hand) is removed at start."""
    import warnings

    from services.registry.mlflow_server import MlflowServerSettings, prepare_auth

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's auth store imports deprecated Starlette/Alembic APIs
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    def settings(password: str) -> MlflowServerSettings:
        return MlflowServerSettings(
            backend_store_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            auth_admin_password=password,
            auth_users="rag:rag-password-0123456",
        )

    with pytest.raises(ValueError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        prepare_auth(settings("short"))
    config = prepare_auth(settings("first-password-0123"))
    assert oct(config.stat().st_mode & 0o777) == "0o600" and "admin_username = llmops-registry" in config.read_text()
    store = SqlAlchemyStore()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.init_db(f"sqlite:///{tmp_path / 'basic_auth.db'}")
    store.create_user("admin", "password1234-legacy", is_admin=True)
    prepare_auth(settings("second-password-0123"))
    users = {u.username: u.is_admin for u in store.list_users()}
    assert users == {"llmops-registry": True, "rag": False}
    assert store.authenticate_user("llmops-registry", "second-password-0123")
    assert not store.authenticate_user("llmops-registry", "first-password-0123")
    store.engine.dispose()


def test_mlflow_auth_starts_on_a_fresh_volume_with_its_config_path_set(tmp_path: Path) -> None:
    """Compose and Helm set MLFLOW_AUTH_CONFIG_PATH for the server, and MLflow's auth package reads that file when it
    is imported: on a fresh volume it did not exist yet, the import failed (KeyError: 'mlflow') and the MLflow
    container restarted forever (found by `make compose-test-full`). A fresh interpreter: the import happens once."""
    config = tmp_path / "auth" / "basic_auth.ini"
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp_path / 'auth' / 'basic_auth.db'}",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "fresh-volume-password-0123",
    }
    code = "from services.registry import mlflow_server as m; print(m.prepare_auth(m.MlflowServerSettings()))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(config) and "[mlflow]" in config.read_text()


def test_a_store_from_before_policy_scopes_gets_the_column(tmp_path: Path) -> None:
    """Migration: a policies table created without `version_tags` (older release) gets it at start, rows kept."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    with old.transaction() as conn:
        conn.execute(text("DROP TABLE policies"))
        conn.execute(text(
            "CREATE TABLE policies (name VARCHAR(128) PRIMARY KEY, object_type VARCHAR(16) NOT NULL, "
            "name_pattern VARCHAR(256) NOT NULL, aliases JSON NOT NULL, required_evals JSON NOT NULL, "
            "created_by VARCHAR(128) NOT NULL, created_at FLOAT NOT NULL)"))  # fmt: skip
        conn.execute(text(
            "INSERT INTO policies VALUES ('g', 'model', '*', '[\"production\"]', '{}', 'admin', 0)"))  # fmt: skip
    old.close()
    migrated = Store(url)
    Store(url).close()  # a second start changes nothing
    with migrated.read() as conn:
        rows = conn.execute(text("SELECT name, version_tags FROM policies")).all()
    assert [tuple(r) for r in rows] == [("g", None)]
