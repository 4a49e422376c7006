"""Parsing and checking of client request bodies on the hot path (orjson, no model instantiation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from llmops_common.errors import APIError

Kind = Literal["chat", "completion"]
PATHS = {"chat": "/chat/completions", "completion": "/completions"}


@dataclass
class ClientRequest:
    """What the gateway needs to know about a request, plus the body to forward."""

    kind: Kind
    model: str
    stream: bool
    wants_usage: bool
    max_tokens: int
    payload: dict[str, Any]
    body_bytes: int


def _bad(message: str, param: str | None = None) -> APIError:
    return APIError(400, "invalid_request", message, param=param)


def _positive_int(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad(f"{name} must be a positive integer", name)
    return value


def parse_request(kind: Kind, raw: bytes, default_max_tokens: int) -> ClientRequest:
    """Validate the fields the gateway acts on; the engine validates the rest and its 400s pass through."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise _bad("request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required (a non-empty string)", "model")
    if kind == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("messages must be a non-empty list", "messages")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise _bad("each message must be an object with a role", "messages")
    elif not isinstance(payload.get("prompt"), str | list):
        raise _bad("prompt is required (a string)", "prompt")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    max_tokens = _positive_int(payload, "max_completion_tokens") or _positive_int(payload, "max_tokens")
    if max_tokens is None:
        # Bounding every request is what makes its cost reservable up front.
        max_tokens = default_max_tokens
        payload["max_tokens"] = max_tokens
    options = payload.get("stream_options")
    wants_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return ClientRequest(kind, model, stream, wants_usage, max_tokens, payload, len(raw))
