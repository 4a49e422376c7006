"""The hardened registry stack as the benchmarks start it: MLflow behind its basic-auth app, the registry as its
only admin, and a second registry admin so principals pass four-eyes outside dev mode (as in production).

Every secret is generated per run and lives only in the run's temp folder and the child processes' environment.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from services.registry.mlflow_server import MlflowServerSettings

MLFLOW_ADMIN_USER = "llmops-registry"
SECOND_ADMIN = "bench-admin2"


class Stack:
    """Credentials and settings of one benchmark run's MLflow + registry."""

    def __init__(self, folder: Path, admin_token: str) -> None:
        self.folder = folder
        self.admin_token = admin_token
        self.mlflow_password = secrets.token_urlsafe(24)
        self.second_admin_token = secrets.token_urlsafe(24)

    def mlflow_settings(self, port: int) -> MlflowServerSettings:
        """MLflow on SQLite in the run's folder, with auth (its users database and config there too)."""
        return MlflowServerSettings(
            backend_store_uri=f"sqlite:///{self.folder / 'mlflow.db'}",
            artifacts_destination=str(self.folder / "artifacts"),
            port=port,
            workers=1,
            auth_admin_username=MLFLOW_ADMIN_USER,
            auth_admin_password=self.mlflow_password,
            auth_database_uri=f"sqlite:///{self.folder / 'basic_auth.db'}",
            auth_config_path=str(self.folder / "basic_auth.ini"),
        )

    def mlflow_auth(self) -> httpx.BasicAuth:
        """For a benchmark that calls MLflow's REST API directly (as the registry does)."""
        return httpx.BasicAuth(MLFLOW_ADMIN_USER, self.mlflow_password)

    def registry_env(self, mlflow_url: str, database_url: str, file_roots: list[Path] | None = None) -> dict[str, str]:
        """The registry's environment: MLflow's admin credentials, the bootstrap admin token, not dev mode.

        Writes the second admin into the governance store first (the operator's break-glass path,
        `python -m services.registry.admin`), so the principals the benchmark creates can be approved."""
        add_second_admin(database_url, self.second_admin_token)
        env = {
            "REGISTRY_MLFLOW_TRACKING_URI": mlflow_url,
            "REGISTRY_MLFLOW_USERNAME": MLFLOW_ADMIN_USER,
            "REGISTRY_MLFLOW_PASSWORD": self.mlflow_password,
            "REGISTRY_DATABASE_URL": database_url,
            "REGISTRY_ADMIN_TOKEN": self.admin_token,
            "REGISTRY_DEV_MODE": "false",
        }
        if file_roots:
            env["REGISTRY_FILE_ARTIFACT_ROOTS"] = ",".join(str(p) for p in file_roots)
        return env

    def create_principal(self, base_url: str, name: str, role: str) -> str:
        """A principal created by the admin and approved by the second admin; returns its token."""
        with (
            httpx.Client(base_url=base_url, headers=_bearer(self.admin_token), timeout=120) as admin,
            httpx.Client(base_url=base_url, headers=_bearer(self.second_admin_token), timeout=120) as admin2,
        ):
            created = admin.post("/v1/principals", json={"name": name, "role": role, "team": "bench"})
            created.raise_for_status()
            if created.status_code == 202:
                rid = created.json()["request_id"]
                admin2.post(f"/v1/principal-requests/{rid}/approve", json={"reason": "bench"}).raise_for_status()
            return str(created.json()["token"])


def add_second_admin(database_url: str, token: str) -> None:
    """A second admin written straight into the governance store (idempotent)."""
    from services.registry.audit import AuditLog
    from services.registry.auth import Principal, PrincipalStore, Role
    from services.registry.store import Store

    store = Store(database_url)
    try:
        principals = PrincipalStore(store, AuditLog(store))
        if not principals.exists(SECOND_ADMIN):
            cli = Principal("system:cli", Role.admin)
            principals.create(cli, SECOND_ADMIN, "admin", None, token, direct=True)
    finally:
        store.close()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
