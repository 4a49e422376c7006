"""Request and response bodies of the registry API for models, evaluations, prompts and datasets (unknown fields
are refused: malformed metadata is a 400). Policies, promotions, audit and principals: `governance_schemas`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="Letters, digits, `.`, `_`, `-`; at most 128.")]
AliasName = Annotated[str, Field(pattern=ALIAS_PATTERN, description="Lower-case alias such as `production`.")]
# A URI with a scheme; `file://` is allowed but MLflow then keeps the registry's run as the version source.
URI_PATTERN = r"^[a-z][a-z0-9+.-]*:(//)?\S+$"


# Tags the registry sets itself; a registrant's value would let a version choose which policies gate it.
RESERVED_TAGS = {
    "finetuned": "tag 'finetuned' is derived by the registry from the version's lineage (a dataset with context "
    "'training', or a training_run_id / base_artifact tag); leave it out",
}


def _no_reserved_prefix(tags: dict[str, str]) -> dict[str, str]:
    for key in tags:
        if key.startswith(("llmops.", "mlflow.")):
            raise ValueError(f"tag {key!r} uses a reserved prefix")
    return tags


class Strict(BaseModel):
    """Base of request bodies: unknown keys are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class DatasetRef(Strict):
    """A dataset version a model saw, and in which role."""

    name: Name
    version: int = Field(ge=1)
    context: Literal["training", "eval", "validation", "other"] = "training"


class ModelVersionCreate(Strict):
    """Everything needed to serve, price and trace one model version."""

    format: Literal["gguf", "hf", "safetensors", "onnx", "openai-compatible"] = Field(
        description="Artifact format; gguf for llama.cpp, hf for a Hugging Face folder (vLLM)."
    )
    artifact_uri: str = Field(
        pattern=URI_PATTERN, max_length=2048, description="Where the weights are: pypi://, hf://, s3://, https://..."
    )
    # The names the inference service registers (services/inference/engines/registry.py, ENGINES); services do not
    # import each other, so tests/common/test_extension_registries.py holds the two lists equal.
    engine: Literal["llamacpp", "vllm", "openai"] = Field(
        description="Engine adapter the inference service uses: a name in its ENGINES registry (docs/extending.md)."
    )
    engine_args: dict[str, Any] = Field(default_factory=dict, description="Engine-specific options, passed through.")
    context_length: int = Field(ge=1, le=10_000_000, description="Context window in tokens.")
    quantisation: str | None = Field(None, max_length=64, description="Quantisation such as Q4_1, AWQ, fp16.")
    license: str = Field(min_length=1, max_length=128, description="SPDX id or licence name.")
    price_per_1m_input: float = Field(
        ge=0, le=1_000_000, allow_inf_nan=False, description="USD per 1M input (prompt) tokens; finite, >= 0."
    )
    price_per_1m_output: float = Field(
        ge=0, le=1_000_000, allow_inf_nan=False, description="USD per 1M output (completion) tokens; finite, >= 0."
    )
    eval_results: dict[str, float] = Field(
        default_factory=dict,
        description="Metric name -> value as reported by the caller (shown, but never enough for a policy: "
        "policies gate on evidence from a platform evaluation run, see POST .../evals).",
    )
    datasets: list[DatasetRef] = Field(default_factory=list, description="Dataset versions this model saw.")
    description: str | None = Field(None, max_length=5000)
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Free tags (not starting with llmops. or mlflow.; not `finetuned`, which the registry derives "
        "from the lineage: a `training` dataset or a training_run_id / base_artifact tag).",
    )

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key in tags:
            if key in RESERVED_TAGS:
                raise ValueError(RESERVED_TAGS[key])
        return _no_reserved_prefix(tags)

    @field_validator("eval_results")
    @classmethod
    def _metric_names(cls, results: dict[str, float]) -> dict[str, float]:
        return _check_metric_names(results)


class ModelVersion(BaseModel):
    """A registered model version with its metadata and current aliases."""

    name: str
    version: str
    aliases: list[str]
    format: str
    artifact_uri: str
    engine: str
    engine_args: dict[str, Any]
    context_length: int
    quantisation: str | None
    license: str
    price_per_1m_input: float
    price_per_1m_output: float
    eval_results: dict[str, float]
    eval_evidence: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Metric -> {value, run_id, evaluator}: what the registry read itself from platform evaluation "
        "runs; the only eval results approval policies accept.",
    )
    datasets: list[DatasetRef]
    description: str | None
    tags: dict[str, str]
    run_id: str | None
    created_by: str | None
    created_at: float


class EvalResults(Strict):
    """Eval results added to an existing version (merged; existing metrics are overwritten).

    `run_id` names an MLflow run written by one of the platform's evaluators (tags `llmops.evaluator` and
    `llmops.evaluated_model`): the registry reads its metrics itself and keeps them as evidence. `results`
    are numbers the caller reports; they are shown but never satisfy an approval policy."""

    results: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=dict)
    run_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="The platform evaluation run.")

    @field_validator("results")
    @classmethod
    def _metric_names(cls, results: dict[str, float]) -> dict[str, float]:
        return _check_metric_names(results)

    @model_validator(mode="after")
    def _something(self) -> EvalResults:
        if not self.results and not self.run_id:
            raise ValueError("give `run_id` (a platform evaluation run) and/or `results`")
        return self


class EvaluationCreate(Strict):
    """An evaluation a platform evaluator ran: the registry writes it as an MLflow run (the evidence)."""

    model: Name
    version: str | None = Field(None, pattern=r"^[0-9]+$", description="The evaluated version, when known.")
    metrics: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(min_length=1, max_length=200)
    params: dict[str, Annotated[str, Field(max_length=500)]] = Field(default_factory=dict, max_length=100)

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, results: dict[str, float]) -> dict[str, float]:
        return _check_metric_names(results)


class Evaluation(BaseModel):
    """The recorded evaluation run; pass `run_id` to `POST /v1/models/{name}/versions/{v}/evals`."""

    run_id: str
    evaluator: str
    model: str
    version: str | None
    metrics: dict[str, float]


class RegisteredModel(BaseModel):
    """A model with its aliases (alias -> version)."""

    name: str
    aliases: dict[str, str]
    latest_version: str | None
    description: str | None


class CatalogueEntry(BaseModel):
    """One row of the gateway's model catalogue and price table."""

    name: str
    version: str
    alias: str
    engine: str
    format: str
    artifact_uri: str
    context_length: int
    price_per_1m_input: float
    price_per_1m_output: float
    aliases: dict[str, str]


class Catalogue(BaseModel):
    """Every model that has the catalogue alias, with its serving version and prices."""

    alias: str
    currency: Literal["USD"] = "USD"
    models: list[CatalogueEntry]


class ChatMessage(Strict):
    """One message of a chat prompt template."""

    role: Literal["system", "user", "assistant"]
    content: str


class PromptVersionCreate(Strict):
    """A new version of a prompt template (`{{variable}}` placeholders)."""

    template: str | list[ChatMessage] = Field(description="Text template, or chat messages with templates.")
    commit_message: str | None = Field(None, max_length=1000)
    eval_results: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("template")
    @classmethod
    def _not_empty(cls, value: str | list[ChatMessage]) -> str | list[ChatMessage]:
        if not value:
            raise ValueError("template must not be empty")
        return value

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return _no_reserved_prefix(tags)

    @field_validator("eval_results")
    @classmethod
    def _metric_names(cls, results: dict[str, float]) -> dict[str, float]:
        return _check_metric_names(results)


class PromptVersion(BaseModel):
    """A prompt version as stored in MLflow's prompt registry."""

    name: str
    version: str
    template: str | list[dict[str, Any]]
    variables: list[str]
    aliases: list[str]
    commit_message: str | None
    eval_results: dict[str, float]
    tags: dict[str, str]
    created_by: str | None
    created_at: float


class PromptSummary(BaseModel):
    """A prompt with its aliases."""

    name: str
    aliases: dict[str, str]
    latest_version: str | None


class RenderRequest(Strict):
    """Which version to render (`version` or `alias`, default alias `production`) and the variable values."""

    version: str | None = Field(None, pattern=r"^[0-9]+$")
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)


class RenderResponse(BaseModel):
    """The rendered prompt: `text` for text templates, `messages` for chat templates."""

    name: str
    version: str
    text: str | None = None
    messages: list[dict[str, str]] | None = None


class DatasetVersionCreate(Strict):
    """A dataset version: content hash, schema, size, where it lives and which run produced it."""

    digest: str = Field(pattern=r"^(sha256|md5|sha1|blake2b):[0-9a-f]{16,128}$", description="e.g. sha256:<hex>.")
    schema_: dict[str, str] = Field(alias="schema", description="Column name -> type.", min_length=1)
    row_count: int = Field(ge=0)
    source: str = Field(pattern=URI_PATTERN, max_length=2048)
    source_type: str = Field("uri", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="e.g. s3, local, feedback-export")
    producer_run_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="MLflow run that produced it.")
    description: str | None = Field(None, max_length=5000)


class DatasetVersion(BaseModel):
    """A registered dataset version and its MLflow run."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    version: int
    digest: str
    schema_: dict[str, str] | None = Field(alias="schema", serialization_alias="schema")
    row_count: int
    source: str
    source_type: str
    producer_run_id: str | None
    mlflow_run_id: str
    description: str | None
    created_by: str
    created_at: float


def _check_metric_names(results: dict[str, float]) -> dict[str, float]:
    for key in results:
        if not re.match(r"^[A-Za-z0-9_.-]{1,128}$", key):
            raise ValueError(f"metric name {key!r} must be letters, digits, `_`, `.` or `-`")
    return results
