"""Settings of the registry service (env prefix REGISTRY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from llmops_common.settings import ServiceSettings

# The repository root: embedded defaults keep their state under <root>/.llmops/data.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / ".llmops" / "data"


class RegistrySettings(ServiceSettings):
    """Where MLflow and the governance store live, who may call, and how long answers are cached."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    port: int = Field(8003, description="TCP port to listen on.")
    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", description="Base URL of the MLflow tracking server (also its model registry)."
    )
    mlflow_timeout_s: float = Field(10.0, gt=0, description="Timeout of one MLflow HTTP call.")
    database_url: str = Field(
        f"sqlite:///{DEFAULT_DATA_DIR / 'registry' / 'registry.db'}",
        description="SQLAlchemy URL of the governance store (audit log, promotion requests, policies, principals); "
        "a postgresql+psycopg:// URL in compose/Helm.",
    )
    cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long alias resolutions and the catalogue are cached in this process (0 disables). "
        "Promotions through this replica invalidate at once; other replicas see them within the TTL.",
    )
    promotion_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="A pending promotion request expires after this many seconds."
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token of the bootstrap principal `admin` (stored hashed). Required outside dev mode; "
        "in dev mode it defaults to `dev-admin-token`.",
    )
    anonymous_reads: bool = Field(
        True,
        description="Let callers without a token read (GET) models, prompts, datasets and the audit log; "
        "writes always need a token. Set false to require a token for reads too.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body.")
    mlflow_username: str | None = Field(
        None,
        description="MLflow user of the registry: the admin of MLflow's basic-auth app (MLFLOW_AUTH_ADMIN_USERNAME "
        "of the server, `llmops-registry` by default). Only the registry holds these credentials.",
    )
    mlflow_password: SecretStr | None = Field(
        None, description="Its password (`make up` generates it into the mode-0600 state)."
    )
    drift_scan_interval_s: float = Field(
        60.0,
        ge=0,
        description="How often every model and prompt in MLflow is compared with the audit log (aliases, "
        "governance tags, audit tags); 0 turns the schedule off (resolutions are still checked).",
    )
    audit_key: SecretStr | None = Field(
        None,
        description="Optional HMAC key signing the audit chain's head (seq + hash) in the governance store; with "
        "it, someone who can write the database but not read this setting cannot truncate the log unnoticed.",
    )
    file_artifact_roots: str = Field(
        f"{DEFAULT_DATA_DIR / 'models'},{REPO_ROOT / 'services' / 'guardrails' / 'artifacts'}",
        description="Comma-separated folders a file:// artifact URI may point into; anything else is refused "
        "(default: .llmops/data/models and the guardrails' packaged artifacts, which `make train-guardrails` "
        "registers).",
    )
    artifact_schemes: str = Field(
        "pypi,hf,s3,gs,https,runs,models,mlflow-artifacts,file",
        description="Comma-separated URI schemes accepted as a model version's artifact_uri.",
    )
    trusted_evaluators: str = Field(
        "rag,guardrails,finetune",
        description="Values of the `llmops.evaluator` tag that mark an MLflow run as written by one of the "
        "platform's evaluators; only such runs count as evidence for an approval policy.",
    )
    evaluator_experiments: str = Field(
        "rag:rag",
        description="`evaluator:experiment,...`: the MLflow experiment each evaluator writes its own runs into. "
        "A run counts as evidence only from its evaluator's experiment (which only that evaluator's MLflow user may "
        "write) or from the registry's own `<prefix>-evaluations` (written through `POST /v1/evaluations`): the "
        "`llmops.evaluator` tag alone can be set by any MLflow user on its own runs.",
    )
    evaluator_tokens: SecretStr | None = Field(
        None,
        description="`name:token,name:token`: platform evaluators (names from REGISTRY_TRUSTED_EVALUATORS) that "
        "record evaluation runs through `POST /v1/evaluations` instead of holding MLflow credentials; the run is "
        "tagged with the name bound to the token, never one from the request.",
    )
    service_tokens: SecretStr | None = Field(
        None,
        description="`name:token,...`: platform services (feedback) that register dataset versions on behalf of "
        "their own callers. Such a token is accepted only by `POST /v1/datasets/{name}/versions`, where its "
        "`X-LLMOps-On-Behalf-Of` header names the real caller, recorded as `created_by`; a principal's token "
        "sending that header is refused (403), so nobody else can name someone else as the creator.",
    )
    experiment_prefix: str = Field(
        "llmops", description="Prefix of the MLflow experiments the registry writes runs into (models, datasets)."
    )

    def evaluators(self) -> set[str]:
        """The trusted evaluator names."""
        return {e.strip() for e in self.trusted_evaluators.split(",") if e.strip()}

    def experiments_of(self, evaluator: str) -> set[str]:
        """Experiment names whose runs may carry `evaluator`'s tag (besides the registry's own evaluations)."""
        pairs = (p.split(":", 1) for p in self.evaluator_experiments.split(",") if ":" in p)
        return {exp.strip() for name, exp in pairs if name.strip() == evaluator and exp.strip()}

    def evaluator_by_token(self) -> dict[str, str]:
        """token -> evaluator name."""
        raw = self.evaluator_tokens.get_secret_value() if self.evaluator_tokens else ""
        pairs = (item.strip().partition(":") for item in raw.split(",") if item.strip())
        return {token: name for name, _, token in pairs if name and token}

    def service_by_token(self) -> dict[str, str]:
        """token -> platform service name (REGISTRY_SERVICE_TOKENS)."""
        raw = self.service_tokens.get_secret_value() if self.service_tokens else ""
        pairs = (item.strip().partition(":") for item in raw.split(",") if item.strip())
        return {token: name for name, _, token in pairs if name and token}

    def bootstrap_admin_token(self) -> str:
        """The admin token to install, refusing a silent default outside dev mode."""
        if self.admin_token:
            return self.admin_token
        if self.dev_mode:
            return "dev-admin-token"
        raise ValueError("REGISTRY_ADMIN_TOKEN is required unless REGISTRY_DEV_MODE=true")
