"""Fixtures: one real `mlflow server` and one registry service per test session (ephemeral ports, temp dirs).

Set REGISTRY_CONTRACT_URL (and REGISTRY_CONTRACT_ADMIN_TOKEN) to run the contract tests against a
running registry instead; then nothing is started here.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.registry.mlflow_server import MlflowServerSettings, server_command
from tests.support.servers import REPO, free_port, server_process, wait_ready

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class MlflowServer:
    """A running MLflow server and its folder."""

    url: str
    folder: Path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server (SQLite + local artifacts) started once; its startup (~10-40 s) is paid once."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    settings = MlflowServerSettings(
        backend_store_uri=f"sqlite:///{folder / 'mlflow.db'}",
        artifacts_destination=str(folder / "artifacts"),
        port=port,
        workers=1,
    )
    with server_process(server_command(settings), folder / "server.log", env=dict(os.environ), cwd=folder) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/health", timeout_s=240, proc=proc)
        yield MlflowServer(url, folder)


@dataclass
class RegistryServer:
    """A running registry service, the MLflow it writes to, and its governance database."""

    url: str
    mlflow_url: str
    database_url: str


@pytest.fixture(scope="session")
def registry_server(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """The registry service in a subprocess, talking to the session's MLflow server."""
    folder = tmp_path_factory.mktemp("registry")
    database_url = f"sqlite:///{folder / 'registry.db'}"
    env = {
        "REGISTRY_MLFLOW_TRACKING_URI": mlflow_server.url,
        "REGISTRY_DATABASE_URL": database_url,
        "REGISTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "REGISTRY_DEV_MODE": "false",
        "REGISTRY_PROMOTION_TTL_S": "60",
    }
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "services.registry.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'libs'}", **env}
    # Own start-up (not tests.support's uvicorn_service) for a longer deadline: importing MLflow's client
    # takes a while on a loaded 2-core machine.
    with server_process(cmd, folder / "registry.log", env=full_env, cwd=REPO) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", timeout_s=180, proc=proc)
        yield RegistryServer(url, mlflow_server.url, database_url)


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


@pytest.fixture(scope="session")
def people(base_url: str) -> Iterator[dict[str, Caller]]:
    """admin, two reviewers, a member, a read-only viewer and an anonymous caller, with unique names."""
    admin_token = os.environ.get("REGISTRY_CONTRACT_ADMIN_TOKEN", ADMIN_TOKEN)
    admin = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {admin_token}"}, timeout=60)
    suffix = secrets.token_hex(3)
    callers = {
        "admin": Caller("admin", "admin", admin),
        "anon": Caller("anon", "", httpx.Client(base_url=base_url, timeout=60)),
    }
    for key, role in [
        ("reviewer", "reviewer"),
        ("reviewer2", "reviewer"),
        ("member", "member"),
        ("viewer", "read-only"),
    ]:
        name = f"t-{key}-{suffix}"
        created = admin.post("/v1/principals", json={"name": name, "role": role, "team": "tests"})
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        callers[key] = Caller(
            name, role, httpx.Client(base_url=base_url, timeout=60, headers={"authorization": f"Bearer {token}"})
        )
    yield callers
    for caller in callers.values():
        caller.http.close()


def unique(prefix: str) -> str:
    """A fresh object name, so tests can run repeatedly against one long-lived registry."""
    return f"{prefix}-{secrets.token_hex(4)}"
