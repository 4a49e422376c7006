"""Request and response bodies of the check API."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _clean(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); they cannot be encoded back, so they become U+FFFD.
    return _SURROGATE.sub("\ufffd", text)


class Caller(BaseModel):
    """Who is asking: selects the policy."""

    model_config = ConfigDict(extra="forbid")

    team: str | None = Field(None, max_length=256, description="Team of the caller; selects its policy.")
    project: str | None = Field(None, max_length=256, description="Project of the caller; may select a project policy.")
    policy: str | None = Field(None, max_length=256, description="Policy name that overrides the team mapping.")


class CheckBase(Caller):
    """Fields common to single-text input and output checks."""

    text: str = Field(description="The text to check (a prompt, or a model answer).")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _clean(value)


Role = Literal["system", "developer", "user", "assistant", "tool"]


class Message(BaseModel):
    """One chat message (or one text part of it); the policy's `roles` map picks its mode (by default `tool`
    results are checked as content, what the model reads, the rest as input)."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(description="The message text (the caller joins text parts, or sends one per part).")
    context: bool = Field(
        False,
        description="Retrieved context a platform service put into the request (RAG's passages): judged in "
        "content mode whatever the role. Callers are platform services (service token); the gateway sets it "
        "only for parts it was allowed to trust.",
    )

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return _clean(value)


class InputCheckRequest(Caller):
    """POST /v1/check/input: one `text`, or every `messages` of a chat request (one call per request)."""

    text: str | None = Field(None, description="A single prompt (the original form).")
    messages: list[Message] | None = Field(
        None, description="Every message of the request, with roles; each one is checked (limit: max_messages)."
    )

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else _clean(value)

    @model_validator(mode="after")
    def _one_form(self) -> InputCheckRequest:
        if (self.text is None) == (self.messages is None):
            raise ValueError("send exactly one of `text` or `messages`")
        return self


class ContentCheckRequest(Caller):
    """POST /v1/check/content: documents, retrieved chunks, tool results, e-mails (indirect injection)."""

    texts: list[str] = Field(description="The texts the model is about to read; each one is judged on its own.")

    @field_validator("texts")
    @classmethod
    def _texts(cls, value: list[str]) -> list[str]:
        return [_clean(v) for v in value]


class OutputCheckRequest(CheckBase):
    """POST /v1/check/output."""

    prompt: str | None = Field(None, description="The prompt that produced the answer (for context).")
    context: list[str] | None = Field(None, max_length=256, description="RAG passages the answer should rest on.")
    json_schema: dict[str, Any] | None = Field(None, description="JSON Schema the answer must validate against.")
    canaries: list[str] | None = Field(
        None, max_length=64, description="Strings planted in the system prompt that must not leak."
    )

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return None if value is None else _clean(value)

    @field_validator("context", "canaries")
    @classmethod
    def _lists(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_clean(v) for v in value]


Decision = Literal["allow", "flag", "redact", "block"]


class FindingOut(BaseModel):
    """One explainable finding."""

    detector: str
    category: str
    start: int = Field(description="Start offset (characters) in the checked text (its message's, with messages).")
    end: int = Field(description="End offset (exclusive).")
    score: float
    reason: str
    action: Decision
    message: int | None = Field(None, description="Index of the message (or text) the span is in; null for `text`.")


class _Verdict(BaseModel):
    decision: Decision = Field(description="The strongest action among the findings (block > redact > flag > allow).")
    policy: str
    fail_mode: Literal["open", "closed"] = Field(description="What the caller should do when this service fails.")
    timeout_ms: int = Field(description="The policy's check budget; the caller's timeout for this call.")
    errors: list[str] = Field(description="Detectors that failed or timed out, handled by the fail mode.")
    latency_ms: float = Field(description="Time spent checking, without HTTP.")


class MessageVerdict(BaseModel):
    """The decision on one message, and its redacted text."""

    index: int
    decision: Decision
    text: str | None = Field(description="The redacted message when its decision is redact, else null.")


class CheckResponse(_Verdict):
    """The decision and every finding behind it."""

    text: str | None = Field(description="The redacted text when decision=redact (single `text` form), else null.")
    findings: list[FindingOut]
    messages: list[MessageVerdict] | None = Field(
        None, description="Per message, in request order (only with `messages`)."
    )


class ContentResult(BaseModel):
    """The decision on one text of a content check."""

    index: int
    decision: Decision
    findings: list[FindingOut]
    text: str | None = Field(description="The redacted text when its decision is redact, else null.")


class ContentCheckResponse(_Verdict):
    """Per-text decisions; `decision` is the strongest of them."""

    results: list[ContentResult]


class PolicyResponse(BaseModel):
    """GET /v1/policies/{team}: the effective policy of a team (and project)."""

    team: str
    project: str | None
    policy: dict[str, Any]
    fail_mode: Literal["open", "closed"]
    timeout_ms: int
