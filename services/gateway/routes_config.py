"""The routes file's schema: typed, and strict, so a typo (`timout_s`, `prise`) stops the gateway at start with
the key's place and the closest valid name instead of being silently ignored."""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Engine-specific request fields a route may let through must look like field names, and may not shadow a field
# the gateway itself validates (that would bypass the gateway's bounds on it).
_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
ContentPart = Literal["text", "image_url"]


class DeploymentFields(BaseModel):
    """One deployment (or the `defaults` every deployment starts from); unset fields take the defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    url: str | None = Field(None, min_length=1, description="OpenAI-compatible base URL, ending in /v1.")
    model: str | None = Field(None, min_length=1, description="The model name the deployment knows.")
    priority: int | None = Field(None, ge=0, le=1000)
    weight: float = Field(1.0, gt=0, le=1e6, allow_inf_nan=False)
    timeout_s: float = Field(120.0, gt=0, le=3600, allow_inf_nan=False)
    connect_timeout_s: float = Field(2.0, gt=0, le=600, allow_inf_nan=False)
    retries: int = Field(1, ge=0, le=10)
    backoff_s: float = Field(0.05, ge=0, le=60, allow_inf_nan=False)
    api_key: str | None = Field(None, description="A literal key (prefer api_key_env).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the key sent as Bearer (GATEWAY_INFERENCE_TOKEN for ours)."
    )
    circuit_failure_threshold: int = Field(3, ge=1, le=1000)
    circuit_cooldown_s: float = Field(30.0, ge=0, le=86400, allow_inf_nan=False)


class PriceFields(BaseModel):
    """USD per 1M tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_1m: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)
    output_per_1m: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)


# The semantic cache's default similarity bar per encoder, chosen on bench/data/semantic_cache/pairs.json (40 paraphrase
# pairs vs. 44 same-topic different questions): one step above the lowest value that served none of the different
# questions (the closest: "sort a dictionary by value" vs "by key"). int8, the gateway's default encoder: 0.93 was
# that value (0.9292), 0.94 serves 62.5% of the paraphrases; float: 0.94 (0.9345), 0.95 serves 65%.
# bench/results/semantic_cache_threshold.md shows how each value splits them, for both encoders.
SEMANTIC_THRESHOLDS = {"int8": 0.94, "float": 0.95}
SEMANTIC_THRESHOLD_DEFAULT = SEMANTIC_THRESHOLDS["int8"]


class SemanticCacheFields(BaseModel):
    """The semantic layer of a model's response cache (services/gateway/semantic_cache.py): a request that misses the
    exact cache is answered with a stored answer to a question whose wording is close enough. Off unless enabled;
    it applies only where the exact cache does (opted in, deterministic) and only to chat requests."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Also serve answers to close rewordings of the last user message.")
    threshold: float | None = Field(
        None,
        ge=0.7,
        le=1.0,
        allow_inf_nan=False,
        description="Least cosine similarity (all-MiniLM-L6-v2) between the last user messages for a hit. Unset: "
        "the default of the gateway's encoder (0.94 int8, 0.95 float: one step above the lowest value that served "
        "no different question in the calibration set, bench/semantic_cache_threshold.py); lower it only with data "
        "from your own traffic.",
    )
    max_entries: int = Field(
        256,
        ge=1,
        le=4096,
        description="Most indexed questions per team and model version; past it the ones closest to expiry "
        "leave the index (their exact entries stay). Every lookup reads one context's vectors (1 KB each).",
    )


class CacheFields(BaseModel):
    """The exact-match response cache of one model (services/gateway/cache.py); off unless `enabled` or a key
    opts in (its `cache` field)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Cache deterministic answers of this model for every key of every team.")
    ttl_s: int = Field(300, ge=1, le=7 * 86400, description="Seconds an entry is served after it was stored.")
    max_entry_bytes: int = Field(
        262_144, ge=256, le=16 * 1_048_576, description="Largest answer stored (larger ones are relayed, not cached)."
    )
    greedy_default: bool = Field(
        False,
        description="The engines decode greedily when a request sends no temperature, so such requests are "
        "deterministic too (OpenAI's default is 1 and llama.cpp's 0.8: leave false unless the engine says so).",
    )
    hit_cost_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of the stored answer's price (at today's price) charged on a hit; 0: hits are free. "
        "Hits never count tokens against TPM.",
    )
    semantic: SemanticCacheFields = Field(
        default_factory=SemanticCacheFields, description="The semantic layer (similar questions share an answer)."
    )


class ModelFields(BaseModel):
    """A public model name, its price, what its engines accept beyond OpenAI's fields, and its deployments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    price: PriceFields = Field(default_factory=PriceFields)
    deployments: list[DeploymentFields] = Field(min_length=1)
    extra_fields: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Engine-specific body fields passed through for this model (scalar values only).",
    )
    max_n: int = Field(1, ge=1, le=16, description="Largest `n` (choices per request) the engines serve.")
    content_parts: list[ContentPart] = Field(
        default_factory=lambda: ["text"],  # type: ignore[arg-type]  # a Literal list
        description="Message content part types the model accepts.",
    )
    cache: CacheFields = Field(default_factory=CacheFields, description="The response cache of this model.")
    mean_logprob: bool = Field(
        False,
        description="Ask the deployments for usage.mean_logprob (the mean log-probability of the answer's tokens) "
        "and put it in the trace event, where the feedback service's low-confidence rule reads it. The deployments "
        "must be the platform's inference service (it understands the internal `mean_logprob` field).",
    )

    @field_validator("extra_fields")
    @classmethod
    def _extra_names(cls, names: list[str]) -> list[str]:
        from services.gateway.fields import STANDARD_FIELDS  # late: fields imports nothing from here

        for name in names:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"extra field {name!r} is not a field name (lower-case letters, digits, _)")
            if name in STANDARD_FIELDS:
                raise ValueError(f"extra field {name!r} is a standard field the gateway validates itself")
        return names


class RoutesFile(BaseModel):
    """The whole routes file."""

    model_config = ConfigDict(extra="forbid")

    defaults: DeploymentFields = Field(default_factory=DeploymentFields)
    models: list[ModelFields] = Field(default_factory=list)


def _schema_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model whose key sits at `loc` (the unknown key is the last element)."""
    parents = [p for p in loc[:-1] if isinstance(p, str)]
    last = parents[-1] if parents else ""
    schemas: dict[str, type[BaseModel]] = {
        "defaults": DeploymentFields,
        "deployments": DeploymentFields,
        "price": PriceFields,
        "models": ModelFields,
        "cache": CacheFields,
        "semantic": SemanticCacheFields,
    }
    return schemas.get(last, RoutesFile)


def describe(exc: ValidationError) -> str:
    """Every problem as `where: what`, with a `did you mean` for unknown keys."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        unknown = err["type"] == "extra_forbidden"
        path = loc[:-1] if unknown else loc  # an unknown key is named in the message, not in the place
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"
        if unknown:
            valid = list(_schema_at(loc).model_fields)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(valid)}"
            problems.append(f"{where}: unknown key '{loc[-1]}' ({hint})")
        else:
            problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)
