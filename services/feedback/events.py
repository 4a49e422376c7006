"""The trace event the gateway writes to the Redis stream (schema 1), and how it is read."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError


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
    """One served request as the gateway saw it; unknown fields are tolerated for forward compatibility."""

    model_config = ConfigDict(extra="ignore")

    schema_: int = Field(1, alias="schema")
    request_id: str = Field(min_length=1, max_length=200)
    trace_id: str | None = None
    ts: float
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
    # Set by this service (privacy.withhold_raw_text), not the producer: 'redacted' or 'blocked' when the
    # guardrails redacted or blocked the request, so its raw text was never stored.
    text_withheld: Literal["redacted", "blocked"] | None = None


class InvalidEvent(ValueError):
    """A stream entry that is not a schema-1 trace event; it is dead-lettered, never retried forever."""


def parse_entry(fields: dict[bytes, bytes]) -> TraceEvent:
    """Parse one stream entry's fields ({b"event": json}) into a TraceEvent."""
    raw = fields.get(b"event")
    if raw is None:
        raise InvalidEvent("stream entry has no 'event' field")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"event is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEvent("event is not a JSON object")
    if data.get("schema", 1) != 1:
        raise InvalidEvent(f"unsupported event schema {data.get('schema')!r}")
    try:
        return TraceEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(f"event does not match schema 1: {exc.errors()[0].get('msg')}") from exc


def prompt_text(prompt: list[Any] | str | None) -> str:
    """The user's words of a prompt: the string itself, or the user messages of a chat joined."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    parts = []
    for message in prompt:
        if isinstance(message, str):  # a completions batch
            parts.append(message)
            continue
        if not isinstance(message, dict) or message.get("role", "user") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # OpenAI content parts: keep the text ones
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(parts)


def is_guardrail_flagged(event: TraceEvent) -> bool:
    """True when any guardrail did something other than allow."""
    return any(g.decision.lower() not in ("allow", "allowed", "pass", "passed") for g in event.guardrails)
