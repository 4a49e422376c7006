"""Start the real `mlflow server` the registry writes to: `python -m services.registry.mlflow_server`.

Embedded default: SQLite at .llmops/data/mlflow/mlflow.db and artifacts under .llmops/data/mlflow/artifacts
(relative to the repository root). Compose/Helm: set MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://... (and an
object store in MLFLOW_ARTIFACTS_DESTINATION). Readiness: GET http://<host>:<port>/health answers `OK`.

MLflow runs behind its own basic-auth app (issue 12, row 1): without credentials every API call is a 401, so
nobody but the registry (its admin user) can move an alias or rewrite a tag. `server_command` prepares the
auth store before the server starts: the admin user gets the configured password (created, or re-keyed when
the setting changed), users not configured are removed, and the extra users of MLFLOW_AUTH_USERS (read-only on
everything they did not create themselves) get theirs. No default password is ever installed.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
import warnings
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry.settings import DEFAULT_DATA_DIR

log = logging.getLogger("llmops.registry.mlflow_server")


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
    auth_enabled: bool = Field(
        True,
        description="Run MLflow's basic-auth app: every call needs a user. Turning it off lets anyone on the "
        "network move aliases behind the registry's back; only for throwaway experiments.",
    )
    auth_admin_username: str = Field(
        "llmops-registry", description="MLflow's admin user: the registry's identity (REGISTRY_MLFLOW_USERNAME)."
    )
    auth_admin_password: SecretStr | None = Field(
        None,
        description="Its password (at least 12 characters); required with auth. `make up` generates it into the "
        "mode-0600 state and hands the same value to the registry as REGISTRY_MLFLOW_PASSWORD.",
    )
    auth_users: SecretStr | None = Field(
        None,
        description="Extra non-admin users as `name:password,name:password` (e.g. rag, feedback, a UI viewer): they "
        "read everything and write only experiments/runs they create; aliases and tags of the registry's models "
        "stay out of their reach.",
    )
    auth_database_uri: str | None = Field(
        None,
        description="Users and permissions of the auth app; default: basic_auth.db beside a SQLite backend store "
        "(else under .llmops/data/mlflow). A postgresql+psycopg:// URL in compose/Helm.",
    )
    auth_cache_ttl_s: int = Field(
        60,
        ge=0,
        description="How long a checked user/password pair is trusted per worker. Each check is a PBKDF2 hash "
        "(tenths of a second on a busy CPU, on every API call); a changed password takes up to this long to apply.",
    )
    flask_server_secret_key: SecretStr | None = Field(
        None,
        description="CSRF key of the auth app's forms (MLflow's own variable); generated once into a mode-0600 "
        "file beside the auth config when unset. Several replicas need the same value.",
    )
    auth_config_path: str | None = Field(
        None, description="Where the generated basic_auth.ini goes (default: beside the auth database)."
    )

    def state_dir(self) -> Path:
        """The folder of a SQLite backend store, else the embedded default."""
        if self.backend_store_uri.startswith("sqlite:///"):
            return Path(self.backend_store_uri.removeprefix("sqlite:///")).parent
        return DEFAULT_DATA_DIR / "mlflow"

    def auth_db(self) -> str:
        """The auth app's database URL."""
        return self.auth_database_uri or f"sqlite:///{self.state_dir() / 'basic_auth.db'}"

    def users(self) -> dict[str, str]:
        """The extra users and their passwords."""
        raw = self.auth_users.get_secret_value() if self.auth_users else ""
        out = {}
        for item in filter(None, (part.strip() for part in raw.split(","))):
            name, sep, password = item.partition(":")
            if not sep or not name or not password:
                raise ValueError("MLFLOW_AUTH_USERS must be `name:password` pairs separated by commas")
            out[name.strip()] = password
        return out


def _provision_users(settings: MlflowServerSettings, db: str, password: str) -> None:
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(db)
    admin = settings.auth_admin_username
    wanted = {admin: (password, True)} | {name: (pw, False) for name, pw in settings.users().items()}
    for name, (pw, is_admin) in wanted.items():
        if store.has_user(name):
            if not store.authenticate_user(name, pw):
                store.update_user(name, password=pw)
            store.update_user(name, is_admin=is_admin)
        else:
            store.create_user(name, pw, is_admin=is_admin)
    # The configuration is the whole list: any other user (e.g. the `admin` of an older install, possibly with a
    # published default password, or one created by hand) is removed; the registry is the only writer of what the
    # platform serves, and the services' users are exactly MLFLOW_AUTH_USERS.
    for user in store.list_users():
        if user.username not in wanted:
            store.delete_user(user.username)
            log.warning("removed MLflow user %r (not in the configuration)", user.username)
    store.engine.dispose()


def prepare_auth(settings: MlflowServerSettings) -> Path:
    """Write the auth app's config and put the users it must know in place; returns the config's path."""
    password = settings.auth_admin_password.get_secret_value() if settings.auth_admin_password else ""
    if len(password) < 12:
        raise ValueError(
            "MLFLOW_AUTH_ADMIN_PASSWORD (at least 12 characters) is required: MLflow runs with authentication "
            "(set MLFLOW_AUTH_ENABLED=false only for a throwaway server)"
        )
    db = settings.auth_db()
    if db.startswith("sqlite:///"):
        Path(db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # The config first: importing MLflow's auth package (for its store, below) reads the file that
    # MLFLOW_AUTH_CONFIG_PATH names at import time. Compose and Helm set that variable for the server, so on a fresh
    # volume the import found no file and failed (KeyError: 'mlflow'), and MLflow never started.
    config = _write_auth_config(settings, db)
    # MLflow's server-side auth store, imported here (only the process that starts the server needs it). Its
    # import and migrations warn about MLflow's own use of deprecated Starlette/Alembic APIs: not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _provision_users(settings, db, password)
    return config


def _write_auth_config(settings: MlflowServerSettings, db: str) -> Path:
    """The auth app's basic_auth.ini (mode 0600: it holds the auth database URL, which may carry a password)."""
    config = Path(settings.auth_config_path or settings.state_dir() / "basic_auth.ini")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {db}\n"
        f"admin_username = {settings.auth_admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        f"auth_cache_ttl_seconds = {settings.auth_cache_ttl_s}\n"
    )
    config.chmod(0o600)  # holds the auth database URL, which may carry a password
    return config


def csrf_key(settings: MlflowServerSettings, config: Path) -> str:
    """The configured CSRF key, else one generated once and kept (mode 0600) beside the auth config."""
    if settings.flask_server_secret_key:
        return settings.flask_server_secret_key.get_secret_value()
    path = config.with_name("flask_secret_key")
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def server_command(settings: MlflowServerSettings) -> list[str]:
    """The exact `mlflow server` argv for these settings (also used by the tests' fixture).

    With auth (the default) the auth store is prepared first; the argv then starts with `env
    MLFLOW_AUTH_CONFIG_PATH=...` so that whoever runs it needs nothing else in its environment."""
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
    if settings.auth_enabled:
        config = prepare_auth(settings)
        env = [f"MLFLOW_AUTH_CONFIG_PATH={config}", f"MLFLOW_FLASK_SERVER_SECRET_KEY={csrf_key(settings, config)}"]
        cmd = [shutil.which("env") or "/usr/bin/env", *env, *cmd, "--app-name", "basic-auth"]
    return cmd


def main() -> None:
    """Replace this process with the MLflow server so signals from `make down` reach it directly."""
    cmd = server_command(MlflowServerSettings())
    shown = [a.split("=", 1)[0] + "=***" if a.startswith("MLFLOW_FLASK_SERVER_SECRET_KEY=") else a for a in cmd]
    print("starting:", " ".join(shown), file=sys.stderr, flush=True)  # the log must not carry the CSRF key
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
