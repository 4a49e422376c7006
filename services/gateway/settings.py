"""Settings of the gateway (env prefix GATEWAY_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from llmops_common.settings import ServiceSettings

DEFAULT_ROUTES = Path(__file__).parent / "config" / "routes.yaml"


class GatewaySettings(ServiceSettings):
    """Where state lives (Redis), who is admin, and which routes file maps models to deployments."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    port: int = Field(8000, description="TCP port to listen on.")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis holding keys, limits, spend and the trace-event stream."
    )
    redis_prefix: str = Field("llmops:gw", description="Prefix of every Redis key the gateway writes.")
    redis_max_connections: int = Field(
        256, ge=8, description="Size of the Redis connection pool; requests wait (up to 5 s) when all are busy."
    )
    redis_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Bound on connecting to Redis and on each Redis reply: a hung Redis (network partition, "
        "stopped process) makes a request fail with 503 state_store_unavailable after this, instead of waiting "
        "for it. Keep it above the slowest legitimate command (a batch file write).",
    )
    key_cache_ttl_s: float = Field(
        10.0,
        ge=0,
        description="Seconds a replica may reuse a key record it read; changes reach every replica at once over "
        "pub/sub, so this only bounds staleness if that feed is lost. 0: read Redis on every request.",
    )
    admin_key: SecretStr | None = Field(
        None, description="Bearer token of the admin API; required unless dev_mode is on."
    )
    routes_file: Path = Field(DEFAULT_ROUTES, description="YAML file mapping public model names to deployments.")
    default_max_tokens: int = Field(
        256, ge=1, description="max_tokens set on requests that do not say; bounds what a request can cost."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body.")
    shutdown_drain_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="On SIGTERM, keep serving this long with `Connection: close` on every response and /readyz 503 "
        "before shutting down, so clients of one of several workers or replicas move at a request boundary "
        "(a rolling restart loses no request); 0: stop at once (libs/llmops_common/drain.py).",
    )
    max_output_tokens: int = Field(
        131_072, ge=1, description="Largest max_tokens / max_completion_tokens a request may ask for (per choice)."
    )
    max_messages: int = Field(
        1000,
        ge=1,
        description="Most chat messages in one request (more: 400 too_many_messages); bounds the one guardrail "
        "check every request costs.",
    )
    max_response_bytes: int = Field(
        4 * 1_048_576,
        ge=1024,
        description="Largest answer relayed from a deployment: a larger whole answer becomes a 502 "
        "upstream_response_too_large, a stream is cut with that error event; the reservation is still settled.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token Prometheus must send to scrape /metrics (it lists every team's spend). Unset: "
        "/metrics is open, allowed only in dev mode (a warning is logged otherwise).",
    )
    events_stream: str = Field("llmops:events", description="Redis stream receiving one trace event per request.")
    events_maxlen: int = Field(
        100_000,
        ge=1000,
        description="Approximate cap on the trace-event stream length. An event takes about 2 KB in Redis (the "
        "soak, bench/results/soak-*.json): 100,000 is about 200 MB, within the default 512 MB cap beside keys and "
        "limits; a million (the old default) would fill that cap long before trimming and refuse every write (507).",
    )
    registry_url: str | None = Field(
        None, description="Registry base URL; when set, production versions and prices come from its catalogue."
    )
    registry_refresh_s: float = Field(30.0, gt=0, description="Seconds between catalogue refreshes.")
    budget_refresh_s: float = Field(
        15.0,
        ge=0,
        description="Seconds between reads of every team's spend and budget into the llmops_gateway_team_*_usd "
        "gauges (the budget alert's input); 0: not exported.",
    )
    guardrails_url: str | None = Field(
        None, description="Base URL of the guardrails service; unset: no guardrail checks."
    )
    guardrails_uds: str | None = Field(
        None,
        description="Path of the guardrails service's Unix socket (uvicorn --uds) when both run on one host: the "
        "checks skip the TCP stack; GATEWAY_GUARDRAILS_URL still names the service (the Host header and any path "
        "prefix). Unset: TCP to GATEWAY_GUARDRAILS_URL.",
    )
    guardrails_token: SecretStr | None = Field(
        None, description="Service token sent as Bearer to the guardrails service (its GUARDRAILS_SERVICE_TOKEN)."
    )
    guardrails_timeout_ms: int = Field(
        500, ge=10, description="Bound on one guardrail call when the team's policy does not set one."
    )
    guardrails_fail_mode: Literal["open", "closed"] = Field(
        "closed", description="What to do when guardrails cannot answer and the team's policy is unknown."
    )
    guardrails_policy_ttl_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a team's guardrails policy (fail mode, timeout) is reused before it is asked again; "
        "while the guardrails service cannot answer, the last policy it gave keeps applying.",
    )
    guardrails_stream_window_chars: int = Field(
        512, ge=64, description="Streamed answers are checked every this many characters (sliding window)."
    )
    events_enabled: bool = Field(True, description="Emit trace events (never blocks a request when on).")
    batch_max_file_bytes: int = Field(
        20 * 1_048_576, ge=1024, description="Largest batch input file accepted by POST /v1/files (kept in Redis)."
    )
    team_file_bytes_max: int = Field(
        200 * 1_048_576,
        ge=1024,
        description="Most bytes of batch files (inputs and results) one team may hold at once; an upload past it "
        "is refused with 413 team_storage_full until files are deleted or expire.",
    )
    embedding_price_per_1m: float = Field(
        0.02,
        ge=0,
        le=1e6,
        allow_inf_nan=False,
        description="USD per 1M tokens embedded by RAG (queries and ingested chunks, reported through POST "
        "/v1/usage/admit). The tokens count against TPM whatever the price; 0 makes embedding free.",
    )
    cache_enabled: bool = Field(
        True,
        description="Master switch of the response cache. The cache is opt-in (a route's `cache.enabled`, a key's "
        "`cache` field); false ignores every opt-in.",
    )
    cache_team_bytes_max: int = Field(
        64 * 1_048_576,
        ge=1024,
        description="Most bytes of response-cache entries one team holds in Redis; storing past it evicts the "
        "team's entries closest to expiry.",
    )
    cache_semantic_int8: bool = Field(
        True,
        description="The semantic cache embeds questions with the int8 copy of all-MiniLM-L6-v2 (2 to 2.5x less CPU "
        "per question; the default threshold is calibrated for it). false: the float model (vectors indexed by one "
        "are never compared with the other's).",
    )
    cache_semantic_embeddings: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="Vectors of recently embedded questions each worker keeps (about 1.6 KB each): a wording asked "
        "again is not embedded again. 0 keeps none.",
    )
    batch_max_lines: int = Field(10_000, ge=1, description="Most requests in one batch input file.")
    batch_concurrency: int = Field(
        4, ge=1, description="Batch lines in flight at once on each replica, across all batches."
    )
    batch_poll_s: float = Field(1.0, gt=0, description="Seconds between the batch worker's looks for work.")
    batch_lease_s: float = Field(
        30.0, ge=1, description="A replica's claim on a batch lapses this long after its last renewal (crash takeover)."
    )
    batch_max_retries: int = Field(
        20, ge=0, description="Retries of a batch line refused with 429 (limits) or 502/503 before it fails."
    )
    batch_retry_max_s: float = Field(
        60.0, gt=0, description="Longest wait before retrying a batch line (Retry-After is honoured up to this)."
    )
    batch_file_ttl_s: int = Field(
        30 * 24 * 3600,
        ge=3600,
        description="Retention of batch data in Redis (OpenAI's default for batch files: 30 days). An input file "
        "expires this long after upload (or per its expires_after), kept while a batch over it may still run; "
        "a finished batch and its output/error files expire this long after the batch ends.",
    )

    @model_validator(mode="after")
    def _admin_key_outside_dev(self) -> GatewaySettings:
        if self.admin_key is None:
            if not self.dev_mode:
                raise ValueError("GATEWAY_ADMIN_KEY is required (or set GATEWAY_DEV_MODE=true for a dev default)")
            self.admin_key = SecretStr("dev-admin-key")
        return self
