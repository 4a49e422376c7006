"""`make up`'s secrets (issue 12 rows 5, 12, 13): each internal service gets its token and each caller the same value,
demo principals only behind the registry's dev flag, and .llmops/ private from the first byte. Nothing is started."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """scripts/platformctl.py as a module, its state folder moved under tmp_path."""
    spec = importlib.util.spec_from_file_location("platformctl_secrets", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    state = tmp_path / ".llmops"
    monkeypatch.setattr(module, "STATE", state)
    monkeypatch.setattr(module, "SECRETS", state / "secrets.json")
    monkeypatch.setattr(module, "ENV_FILE", state / "env")
    for name in ("gateway", "inference", "rag", "registry", "feedback", "guardrails"):
        monkeypatch.delenv(f"{name.upper()}_APP", raising=False)
    return module


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_internal_service_gets_its_token_and_its_callers_the_same_value(ctl: ModuleType) -> None:
    data = ctl._load_secrets()
    procs = {p.name: p.env for p in ctl.processes(data)}
    inference, guardrails = data["inference_service_token"], data["guardrails_service_token"]
    assert procs["inference"]["INFERENCE_SERVICE_TOKEN"] == procs["gateway"]["GATEWAY_INFERENCE_TOKEN"] == inference
    assert procs["guardrails"]["GUARDRAILS_SERVICE_TOKEN"] == guardrails
    assert procs["gateway"]["GATEWAY_GUARDRAILS_TOKEN"] == procs["rag"]["RAG_GUARDRAILS_TOKEN"] == guardrails
    assert procs["rag"]["RAG_SERVICE_TOKEN"] == data["rag_service_token"]
    assert procs["gateway"]["GATEWAY_METRICS_TOKEN"] == data["gateway_metrics_token"]
    tokens = [data[n] for n in ctl.GENERATED_SECRETS]
    assert len(set(tokens)) == len(tokens) and all(len(t) > 30 for t in tokens), "distinct, long, random"


def test_no_service_runs_in_dev_mode_but_the_registry_whose_flag_seeds_the_demo_principals(ctl: ModuleType) -> None:
    """Row 12: demo tokens exist only behind REGISTRY_DEV_MODE, which `make up` (and only it) sets; the internal
    services get their real token instead of a dev mode."""
    procs = ctl.processes(ctl._load_secrets())
    for proc in procs:
        dev = {k for k, v in proc.env.items() if k.endswith("_DEV_MODE") and v.lower() == "true"}
        assert dev == ({"REGISTRY_DEV_MODE"} if proc.name == "registry" else set()), proc.name
    mlflow = next(p for p in procs if p.name == "mlflow")
    assert mlflow.seed_env["REGISTRY_DEV_MODE"] == "true"


def test_state_is_private_and_written_atomically(ctl: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row 13: .llmops/ 0700, secrets.json and env 0600, even over older world-readable ones, never a wider window."""
    ctl.STATE.mkdir(mode=0o755)
    ctl.STATE.chmod(0o755)
    ctl.SECRETS.write_text(json.dumps({"admin_key": "kept"}))
    ctl.SECRETS.chmod(0o644)
    seen: list[int] = []
    real_replace = os.replace

    def replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        seen.append(_mode(Path(src)))  # the file as it is before anyone could find it under its name
        real_replace(src, dst)

    monkeypatch.setattr(ctl.os, "replace", replace)
    data = ctl._load_secrets()
    assert data["admin_key"] == "kept" and set(ctl.GENERATED_SECRETS) <= set(data)
    ctl.write_private(ctl.ENV_FILE, ctl.env_file_text("http://127.0.0.1:8000", "sk-demo", data))
    assert _mode(ctl.STATE) == 0o700
    assert _mode(ctl.SECRETS) == 0o600 and _mode(ctl.ENV_FILE) == 0o600
    assert seen == [0o600, 0o600]
    assert sorted(p.name for p in ctl.STATE.iterdir()) == ["env", "secrets.json"], "no temporary file left"


def test_env_file_lists_the_urls_and_the_tokens_a_learner_needs(ctl: ModuleType) -> None:
    data = ctl._load_secrets()
    lines = dict(line.split("=", 1) for line in ctl.env_file_text("http://g", "sk-demo", data).splitlines())
    assert lines["LLMOPS_API_KEY"] == "sk-demo" and lines["LLMOPS_GATEWAY_URL"] == "http://g"
    assert lines["LLMOPS_INFERENCE_TOKEN"] == data["inference_service_token"]
    assert lines["LLMOPS_METRICS_TOKEN"] == data["gateway_metrics_token"]
    assert set(ctl.ENV_FILE_SECRETS) <= set(lines)


def test_a_running_service_is_restarted_when_its_settings_change(ctl: ModuleType) -> None:
    """A platform started before the service tokens existed is not left running open: the fingerprint differs."""
    data = ctl._load_secrets()
    inference = next(p for p in ctl.processes(data) if p.name == "inference")
    now = ctl.launch_fingerprint(inference.cmd, inference.env)
    before = {k: v for k, v in inference.env.items() if k != "INFERENCE_SERVICE_TOKEN"}
    assert ctl.launch_fingerprint(inference.cmd, before) != now
    assert ctl.launch_fingerprint(inference.cmd, dict(inference.env)) == now
    assert data["inference_service_token"] not in json.dumps(now), "no secret in clear under .llmops/run"


def test_mlflow_users_and_the_course_evaluator_are_wired(ctl: ModuleType) -> None:
    """Row 1: MLflow answers 401 without a user, so RAG and feedback get their own (non-admin) logins, learners a
    read-only one; row 12: the course records evaluations as the `course` evaluator, trusted only by `make up`."""
    data = ctl._load_secrets()
    procs = {p.name: p.env for p in ctl.processes(data)}
    users = dict(item.split(":", 1) for item in procs["mlflow"]["MLFLOW_AUTH_USERS"].split(","))
    assert users == {u: data[f"mlflow_{u}_password"] for u in ("rag", "feedback", "viewer")}
    assert ctl.MLFLOW_ADMIN not in users, "the registry stays MLflow's only admin"
    assert procs["rag"]["RAG_MLFLOW_USERNAME"] == "rag" and procs["rag"]["RAG_MLFLOW_PASSWORD"] == users["rag"]
    assert procs["feedback"]["MLFLOW_TRACKING_USERNAME"] == "feedback"
    assert procs["feedback"]["MLFLOW_TRACKING_PASSWORD"] == users["feedback"]
    assert procs["registry"]["REGISTRY_EVALUATOR_TOKENS"] == f"course:{data['course_evaluator_token']}"
    assert "course" in procs["registry"]["REGISTRY_TRUSTED_EVALUATORS"].split(",")
    for name, env in procs.items():
        if name != "registry":
            assert data["course_evaluator_token"] not in json.dumps(env), name
        if name != "mlflow":
            assert "MLFLOW_AUTH_USERS" not in env and users["viewer"] not in json.dumps(env), name
    lines = dict(line.split("=", 1) for line in ctl.env_file_text("http://g", "sk-demo", data).splitlines())
    assert lines["LLMOPS_MLFLOW_USERNAME"] == "viewer" and lines["LLMOPS_MLFLOW_PASSWORD"] == users["viewer"]
    assert lines["LLMOPS_EVALUATOR_TOKEN"] == data["course_evaluator_token"]
    assert data["mlflow_admin_password"] not in lines.values(), "the admin login stays in secrets.json"


def test_feedback_registers_datasets_with_its_own_service_identity(ctl: ModuleType) -> None:
    """Row 8: feedback holds a generated registry service token (never a demo principal's) and the registry knows
    it as `feedback`, the one identity allowed to register on behalf of a caller; no other process holds it."""
    data = ctl._load_secrets()
    procs = {p.name: p.env for p in ctl.processes(data)}
    token = procs["feedback"]["FEEDBACK_REGISTRY_TOKEN"]
    assert token == data["feedback_registry_token"] and token != "demo-member-token"
    assert procs["registry"]["REGISTRY_SERVICE_TOKENS"] == f"feedback:{token}"
    for name, env in procs.items():
        if name not in ("feedback", "registry"):
            assert token not in json.dumps(env), name
