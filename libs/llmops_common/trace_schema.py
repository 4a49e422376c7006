"""The trace event: one per served request, on the Redis stream `llmops:events`. This model is its one owner.

Producers (the gateway per LLM call, RAG per answer request) build a `TraceEvent`, so a field they misspell or
mistype fails in their own tests instead of reaching the feedback service as an untyped dict; the consumer
(feedback) reads the stream with `parse_trace_event`. `tests/common/test_trace_schema.py` keeps it compatible:
events as earlier producers wrote them still parse, and each producer's output validates.

Versioning: `schema_version` (written as `schema` on the wire, its name since version 1). Adding an optional
field keeps the version; renaming, removing or changing the meaning of a field is a new version, which the
consumer learns to read (SUPPORTED_VERSIONS) before any producer writes it. Unknown fields are ignored, so a
newer producer's additions do not break an older consumer.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

TRACE_SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})


class GuardrailResult(BaseModel):
    """One guardrail check the gateway ran on the request or the response."""

    model_config = ConfigDict(extra="allow")

    stage: Literal["input", "output"]
    decision: str
    findings: list[Any] = Field(default_factory=list)


class RetrievedChunk(BaseModel):
    """One chunk the RAG service retrieved for the request."""

    model_config = ConfigDict(extra="allow")

    chunk_id: str
    document_id: str
    score: float


class TraceEvent(BaseModel):
    """One served request as its producer saw it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    schema_version: int = Field(
        TRACE_SCHEMA_VERSION,
        validation_alias=AliasChoices("schema", "schema_version"),
        serialization_alias="schema",
        description="The event's schema version (wire name `schema`; absent in the oldest events: 1).",
    )
    request_id: str = Field(min_length=1, max_length=200)
    trace_id: str | None = None
    ts: float = Field(description="Unix time the producer finished the request.")
    team: str
    project: str
    key_id: str
    model: str
    model_version: str | None = None
    deployment: str | None = None
    prompt_version: str | None = None
    endpoint: Literal["chat", "completions", "rag"]
    status: int
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    guardrails: list[GuardrailResult] = Field(default_factory=list)
    retrieval: list[RetrievedChunk] = Field(default_factory=list)
    # chat: a list of messages; completions: a string, or a list of strings (OpenAI allows a batch).
    prompt: list[Any] | str | None = None
    response: str | None = None
    mean_logprob: float | None = None
    redacted: bool = Field(False, description="The guardrails redacted the request: `prompt` is the redacted text.")
    withheld: list[Literal["prompt", "response"]] = Field(
        default_factory=list, description="Texts the producer did not send because the guardrails blocked them."
    )
    cached: bool = Field(False, description="Answered from the gateway's response cache.")

    def wire(self) -> dict[str, Any]:
        """The JSON object written to the stream."""
        return self.model_dump(mode="json", by_alias=True)


E = TypeVar("E", bound=TraceEvent)


class InvalidTraceEvent(ValueError):
    """A stream entry that is not a trace event this code can read."""


def parse_trace_event(raw: bytes | str, model: type[E]) -> E:
    """Parse one event's JSON (as `model`, a TraceEvent subclass a consumer may extend); InvalidTraceEvent if not."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidTraceEvent(f"event is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidTraceEvent("event is not a JSON object")
    version = data.get("schema", data.get("schema_version", 1))
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise InvalidTraceEvent(f"unsupported event schema {version!r} (this code reads {sorted(SUPPORTED_VERSIONS)})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidTraceEvent(f"event does not match schema {version}: {where}: {first.get('msg')}") from exc
