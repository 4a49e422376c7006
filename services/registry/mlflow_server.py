"""Start the real `mlflow server` the registry writes to: `python -m services.registry.mlflow_server`.

Embedded default: SQLite at .llmops/data/mlflow/mlflow.db and artifacts under .llmops/data/mlflow/artifacts
(relative to the repository root). Compose/Helm: set MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://... (and an
object store in MLFLOW_ARTIFACTS_DESTINATION). Readiness: GET http://<host>:<port>/health answers `OK`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry.settings import DEFAULT_DATA_DIR


class MlflowServerSettings(BaseSettings):
    """How the MLflow server is started (env prefix MLFLOW_, the names MLflow's own CLI also reads)."""

    model_config = SettingsConfigDict(env_prefix="MLFLOW_", extra="ignore")

    backend_store_uri: str = Field(
        f"sqlite:///{DEFAULT_DATA_DIR / 'mlflow' / 'mlflow.db'}",
        description="Runs, models and prompts: SQLite by default, postgresql+psycopg://user:pw@host/db (compose/Helm).",
    )
    artifacts_destination: str = Field(
        str(DEFAULT_DATA_DIR / "mlflow" / "artifacts"),
        description="Where the server stores artifacts it proxies (a folder, or s3://... in production).",
    )
    host: str = Field("127.0.0.1", description="Interface to bind (0.0.0.0 in containers).")
    port: int = Field(5000, description="TCP port of the UI and REST API.")
    workers: int = Field(1, ge=1, description="Server worker processes; one is plenty on a laptop.")
    allowed_hosts: str | None = Field(
        None, description="Comma-separated Host headers to accept when binding beyond localhost (e.g. mlflow:5000)."
    )


def server_command(settings: MlflowServerSettings) -> list[str]:
    """The exact `mlflow server` argv for these settings (also used by the tests' fixture)."""
    if settings.backend_store_uri.startswith("sqlite:///"):
        Path(settings.backend_store_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in settings.artifacts_destination:
        Path(settings.artifacts_destination).mkdir(parents=True, exist_ok=True)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow") or "mlflow"
    cmd = [
        mlflow_bin, "server",
        "--backend-store-uri", settings.backend_store_uri,
        "--artifacts-destination", settings.artifacts_destination,
        "--serve-artifacts",
        "--host", settings.host,
        "--port", str(settings.port),
        "--workers", str(settings.workers),
    ]  # fmt: skip
    if settings.allowed_hosts:
        cmd += ["--allowed-hosts", settings.allowed_hosts]
    return cmd


def main() -> None:
    """Replace this process with the MLflow server so signals from `make down` reach it directly."""
    cmd = server_command(MlflowServerSettings())
    print("starting:", " ".join(cmd), file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
