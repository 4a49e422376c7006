"""Request and response bodies of the check API."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _clean(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); they cannot be encoded back, so they become U+FFFD.
    return _SURROGATE.sub("\ufffd", text)


class CheckBase(BaseModel):
    """Fields common to input and output checks."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The text to check (a prompt, or a model answer).")
    team: str | None = Field(None, max_length=256, description="Team of the caller; selects its policy.")
    project: str | None = Field(None, max_length=256, description="Project of the caller; may select a project policy.")
    policy: str | None = Field(None, max_length=256, description="Policy name that overrides the team mapping.")

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _clean(value)


class InputCheckRequest(CheckBase):
    """POST /v1/check/input."""


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


class FindingOut(BaseModel):
    """One explainable finding."""

    detector: str
    category: str
    start: int = Field(description="Start offset (characters) in the checked text.")
    end: int = Field(description="End offset (exclusive).")
    score: float
    reason: str
    action: Literal["allow", "flag", "redact", "block"]


class CheckResponse(BaseModel):
    """The decision and every finding behind it."""

    decision: Literal["allow", "flag", "redact", "block"]
    text: str | None = Field(description="The redacted text when decision=redact, else null.")
    findings: list[FindingOut]
    policy: str
    fail_mode: Literal["open", "closed"] = Field(description="What the caller should do when this service fails.")
    timeout_ms: int = Field(description="The policy's check budget; the caller's timeout for this call.")
    errors: list[str] = Field(description="Detectors that failed or were skipped, handled by the fail mode.")
    latency_ms: float = Field(description="Time spent checking, without HTTP.")


class PolicyResponse(BaseModel):
    """GET /v1/policies/{team}: the effective policy of a team (and project)."""

    team: str
    project: str | None
    policy: dict[str, Any]
    fail_mode: Literal["open", "closed"]
    timeout_ms: int
