"""Bodies of the admin API and documentation models of the OpenAI-compatible routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_TEAM = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Limits are stored and compared in Redis as 64-bit integers (budgets in nano-USD): bounded so none can overflow
# there or in the conversion (`budget_usd: 1e308` was a 500), and finite (JSON's NaN/Infinity are refused).
MAX_RATE = 1_000_000_000
MAX_BUDGET_USD = 1_000_000_000.0


def _rate(description: str | None = None) -> Any:
    return Field(None, ge=0, le=MAX_RATE, description=description)


def _budget(description: str | None = None) -> Any:
    return Field(None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False, description=description)


class TeamIn(BaseModel):
    """Create or replace a team and its shared limits (omit a limit for none)."""

    model_config = ConfigDict(extra="forbid")

    team: str = _TEAM
    rpm_limit: int | None = _rate("Requests per minute for the whole team.")
    tpm_limit: int | None = _rate("Tokens per minute for the whole team.")
    budget_usd: float | None = _budget("Total USD the team may spend (at most 1e9).")


class TeamOut(BaseModel):
    """A team with its limits and spend so far."""

    team: str
    rpm_limit: int | None
    tpm_limit: int | None
    budget_usd: float | None
    spend_usd: float


class KeyIn(BaseModel):
    """Create a virtual key bound to a team and project."""

    model_config = ConfigDict(extra="forbid")

    team: str = _TEAM
    project: str = Field("default", min_length=1, max_length=64)
    name: str = Field("", max_length=128)
    allowed_models: list[str] = Field(default_factory=list, max_length=256, description="Empty: every model.")
    rpm_limit: int | None = _rate()
    tpm_limit: int | None = _rate()
    budget_usd: float | None = _budget()
    cache: bool | None = Field(
        None,
        description="The response cache for this key's deterministic requests: true on, false never, null (default) "
        "as each model's route says.",
    )


class KeyPatch(BaseModel):
    """Fields of a key that can change (send only what changes; null removes a limit)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=128)
    allowed_models: list[str] | None = Field(None, max_length=256)
    rpm_limit: int | None = _rate()
    tpm_limit: int | None = _rate()
    budget_usd: float | None = _budget()
    cache: bool | None = Field(
        None,
        description="The response cache for this key's deterministic requests: true on, false never, null (default) "
        "as each model's route says.",
    )


class KeyOut(BaseModel):
    """A key as the admin API shows it: never the key itself, only a hint."""

    key_id: str
    team: str
    project: str
    name: str
    key_hint: str
    allowed_models: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    budget_usd: float | None
    spend_usd: float
    status: str
    created_at: float
    cache: bool | None = None


class KeyCreated(KeyOut):
    """Returned once at creation: `key` is the only time the plaintext is shown."""

    key: str


class Me(BaseModel):
    """Who a bearer key belongs to (used by rag and feedback for tenancy)."""

    key_id: str
    team: str
    project: str
    allowed_models: list[str]


class UsageAdmit(BaseModel):
    """A service (RAG) asking, with the caller's key, to count one request that is not an LLM call."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["rag.query", "rag.ingest", "rag.embed"] = Field(
        description="What the request is (a metrics label): `rag.query` and `rag.ingest` count one request against "
        "the rpm limits; `rag.embed` (a group of chunks of an ingestion already admitted) counts only its tokens."
    )
    units: int = Field(1, ge=1, le=1, description="Requests to count; always 1 (one admission per request).")
    tokens: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Tokens the request embeds (the embedder's own tokenizer count): checked against the key's and "
        "team's tokens per minute and charged at GATEWAY_EMBEDDING_PRICE_PER_1M before the work runs.",
    )


class OpenAIRequestDoc(BaseModel):
    """The OpenAI-compatible request body (main fields; the full allow-list and bounds are in the gateway README).
    Unknown fields are refused with 400 `unknown_field` unless the model's route declares them."""

    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | list[str] | None = None
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
