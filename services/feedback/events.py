"""The trace events this service reads (the schema lives in llmops_common.trace_schema), and helpers over them."""

from __future__ import annotations

from typing import Any, Literal

from llmops_common.trace_schema import InvalidTraceEvent, parse_trace_event
from llmops_common.trace_schema import TraceEvent as WireEvent

__all__ = ["InvalidEvent", "TraceEvent", "is_guardrail_flagged", "parse_entry", "prompt_text"]


class TraceEvent(WireEvent):
    """A trace event as this service keeps it: the shared schema plus what this service decides about it."""

    # Set by this service (privacy.withhold_raw_text), not the producer: 'redacted' or 'blocked' when the
    # guardrails redacted or blocked the request, so its raw text was never stored.
    text_withheld: Literal["redacted", "blocked"] | None = None


class InvalidEvent(InvalidTraceEvent):
    """A stream entry that is not a trace event this service reads; it is dead-lettered, never retried forever."""


def parse_entry(fields: dict[bytes, bytes]) -> TraceEvent:
    """Parse one stream entry's fields ({b"event": json}) into a TraceEvent."""
    raw = fields.get(b"event")
    if raw is None:
        raise InvalidEvent("stream entry has no 'event' field")
    try:
        return parse_trace_event(raw, TraceEvent)
    except InvalidTraceEvent as exc:
        raise InvalidEvent(str(exc)) from exc


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
