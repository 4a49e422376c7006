"""Nothing raw is kept of a request the guardrails blocked or redacted (issue 12, row 7).

The gateway is asked to send only redacted text for such requests; this service does not rely on it. An event
whose guardrail verdict is `block` keeps no prompt or response at all; one whose verdict is `redact` keeps its
text only after this service's own redaction (structured PII and secrets). Either way the event is marked
(`text_withheld`), and what is marked is all that reaches the store, the labeling queue and the MLflow traces.
"""

from __future__ import annotations

from typing import Any

import orjson

from services.feedback.events import TraceEvent
from services.feedback.redact import redact

_BLOCKED_CODES = frozenset({"guardrail_blocked"})


def verdict(guardrails: list[Any], error_code: str | None) -> str | None:
    """'blocked', 'redacted' or None from the event's guardrail decisions (any stage) and error code."""
    decisions = {
        str(g.get("decision") if isinstance(g, dict) else getattr(g, "decision", "")).lower() for g in guardrails
    }
    if "block" in decisions or error_code in _BLOCKED_CODES:
        return "blocked"
    if "redact" in decisions:
        return "redacted"
    return None


def _redact_text(text: str | None) -> str | None:
    return None if text is None else redact(text)[0]


def _redact_message(message: Any) -> Any:
    """A chat message reduced to its role and redacted content (tool-call arguments and names are dropped)."""
    if isinstance(message, str):  # a completions batch
        return redact(message)[0]
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        content = redact(content)[0]
    elif isinstance(content, list):
        content = [
            {"type": "text", "text": redact(str(p.get("text", "")))[0]}
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        ]
    else:
        content = None
    return {"role": message.get("role", "user"), "content": content}


def withhold_raw_text(ev: TraceEvent) -> TraceEvent:
    """The event as it may be kept: unchanged when the guardrails let it through untouched."""
    found = verdict(list(ev.guardrails), ev.error_code)
    if found == "blocked":
        return ev.model_copy(update={"prompt": None, "response": None, "text_withheld": "blocked"})
    if found == "redacted":
        prompt: list[Any] | str | None
        if isinstance(ev.prompt, str):
            prompt = redact(ev.prompt)[0]
        elif isinstance(ev.prompt, list):
            prompt = [_redact_message(m) for m in ev.prompt]
        else:
            prompt = None
        return ev.model_copy(
            update={"prompt": prompt, "response": _redact_text(ev.response), "text_withheld": "redacted"}
        )
    return ev


def dead_letter_text(raw: bytes, limit: int = 10_000) -> str | None:
    """What a dead letter may keep of an invalid entry: nothing when it carries a block/redact verdict, else the
    entry (cut at `limit`) with structured PII redacted."""
    text = raw[:limit].decode("utf-8", "replace")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        guardrails = data.get("guardrails")
        if verdict(guardrails if isinstance(guardrails, list) else [], data.get("error_code")) is not None:
            return None
    elif '"block"' in text or '"redact"' in text:
        return None  # not parseable, but it looks like a verdict: keep nothing rather than guess
    return redact(text)[0]
