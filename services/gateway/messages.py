"""Chat messages: their shape (roles, content parts, tool calls) and the texts in them the guardrails read.

Every role is checked, and every piece of text a model will read: string content, each text part, and the
arguments of earlier tool calls. `Segment` remembers where each text came from, so a redaction from the
guardrails is written back into exactly that place.

Retrieved context: a platform service (RAG) that has already checked its passages in the guardrails' content
mode may mark the text parts that carry them with `"llmops_context": true`. The gateway honours the mark only
on a request that also presents the service token (stages/admit.py), re-checks those parts in content mode (what the
model reads) instead of input mode (what a user says), and removes the mark before the body goes upstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.gateway.fields import MAX_TOOLS, bad

ROLES = ("system", "developer", "user", "assistant", "tool")
_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal"},
    "tool": {"role", "content", "tool_call_id"},
}
CONTEXT_MARK = "llmops_context"
_PART_KEYS = {"text": {"type", "text", CONTEXT_MARK}, "image_url": {"type", "image_url"}}


@dataclass(frozen=True)
class Segment:
    """One text of a request: message `index`, its role, and where the text sits in that message."""

    index: int
    role: str
    where: tuple[str | int, ...]  # ("content",) | ("content", part) | ("tool_calls", call)
    text: str
    context: bool = False  # a trusted, marked retrieved-context part: checked in content mode


def _part(where: str, part: Any, allowed: frozenset[str]) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in _PART_KEYS:
        raise bad(where, f"unknown content part type {kind!r}; this gateway accepts: {', '.join(sorted(allowed))}")
    if kind not in allowed:
        raise bad(where, f"content parts of type '{kind}' are not accepted by this model")
    if set(part) - _PART_KEYS[kind]:
        raise bad(where, f"unexpected key(s) {', '.join(sorted(set(part) - _PART_KEYS[kind]))}")
    if kind == "text" and not isinstance(part.get("text"), str):
        raise bad(f"{where}.text", "must be a string")
    if CONTEXT_MARK in part and part[CONTEXT_MARK] is not True:
        raise bad(f"{where}.{CONTEXT_MARK}", "must be true when present (marks retrieved context)")
    if kind == "image_url":
        image = part.get("image_url")
        if not (isinstance(image, dict) and isinstance(image.get("url"), str) and set(image) <= {"url", "detail"}):
            raise bad(f"{where}.image_url", 'must be {"url": "...", "detail"?: "auto|low|high"}')


def _tool_calls(where: str, calls: Any) -> None:
    if not isinstance(calls, list) or len(calls) > MAX_TOOLS:
        raise bad(where, f"must be a list of at most {MAX_TOOLS} tool calls")
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        ok = (
            isinstance(call, dict)
            and set(call) <= {"id", "type", "function"}
            and isinstance(call.get("id"), str)
            and call.get("type") == "function"
            and isinstance(fn, dict)
            and set(fn) <= {"name", "arguments"}
            and isinstance(fn.get("name"), str)
            and isinstance(fn.get("arguments"), str)
        )
        if not ok:
            raise bad(f"{where}[{i}]", 'must be {"id", "type": "function", "function": {"name", "arguments"}}')


def check_messages(messages: Any, max_messages: int, parts: frozenset[str]) -> None:
    """Validate the shape of every message; 400 naming the first bad one."""
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "must be a non-empty list")
    if len(messages) > max_messages:
        raise bad(
            "messages",
            f"{len(messages)} messages; at most {max_messages} are accepted per request",
            code="too_many_messages",
        )
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise bad(where, f"each message must be an object with a role ({', '.join(ROLES)})")
        unknown = set(message) - _KEYS[role]
        if unknown:
            name = sorted(unknown)[0]
            raise bad(f"{where}.{name}", f"unknown field for a {role} message", code="unknown_field")
        content = message.get("content")
        if isinstance(content, list):
            if not content:
                raise bad(f"{where}.content", "must not be an empty list")
            for j, part in enumerate(content):
                _part(f"{where}.content[{j}]", part, parts)
        elif not isinstance(content, str) and not (content is None and role == "assistant"):
            raise bad(f"{where}.content", "must be a string or a list of content parts")
        if "name" in message and not (isinstance(message["name"], str) and len(message["name"]) <= 64):
            raise bad(f"{where}.name", "must be a string of at most 64 characters")
        if "tool_calls" in message:
            _tool_calls(f"{where}.tool_calls", message["tool_calls"])
        if "tool_call_id" in message and not isinstance(message["tool_call_id"], str):
            raise bad(f"{where}.tool_call_id", "must be a string")
        if "refusal" in message and not isinstance(message["refusal"], str | None):
            raise bad(f"{where}.refusal", "must be a string")


def take_context_marks(messages: list[dict[str, Any]]) -> frozenset[tuple[int, int]]:
    """Remove every `llmops_context` mark (the upstream sees plain OpenAI parts); returns (message, part) of each."""
    marked: set[tuple[int, int]] = set()
    for i, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if part.pop(CONTEXT_MARK, None) is True:
                    marked.add((i, j))
    return frozenset(marked)


def segments(messages: list[dict[str, Any]], context: frozenset[tuple[int, int]] = frozenset()) -> list[Segment]:
    """Every non-empty text of already validated messages, in order; `context` parts are marked as such."""
    found: list[Segment] = []
    for i, message in enumerate(messages):
        role = message["role"]
        content = message.get("content")
        if isinstance(content, str) and content:
            found.append(Segment(i, role, ("content",), content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if part.get("type") == "text" and part["text"]:
                    found.append(Segment(i, role, ("content", j), part["text"], (i, j) in context))
        for k, call in enumerate(message.get("tool_calls") or ()):
            if call["function"]["arguments"]:
                found.append(Segment(i, role, ("tool_calls", k), call["function"]["arguments"]))
    return found


def write_back(messages: list[dict[str, Any]], segment: Segment, text: str) -> None:
    """Put a redacted text where `segment` came from."""
    message = messages[segment.index]
    if segment.where == ("content",):
        message["content"] = text
    elif segment.where[0] == "content":
        message["content"][segment.where[1]]["text"] = text
    else:
        message["tool_calls"][segment.where[1]]["function"]["arguments"] = text


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message (string content or text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
