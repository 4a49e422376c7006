"""Parsing and checking of client request bodies on the hot path (orjson, no model instantiation).

Two steps: `parse_request` reads what routing needs (model, stream, the output bound); `check_request` then
holds the body to the model's route: the field allow-list, message shapes, `n`. What is forwarded is exactly
what was validated, and the output bound sent upstream is the one the reservation was made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from llmops_common.errors import APIError
from services.gateway.fields import bad, check_fields
from services.gateway.messages import CONTEXT_MARK, check_messages, take_context_marks
from services.gateway.routing import ModelRoute

Kind = Literal["chat", "completion"]
PATHS = {"chat": "/chat/completions", "completion": "/completions"}


@dataclass
class ClientRequest:
    """What the gateway needs to know about a request, plus the body to forward."""

    kind: Kind
    model: str
    stream: bool
    wants_usage: bool
    max_tokens: int  # per choice; the body forwarded upstream carries exactly this
    payload: dict[str, Any]
    body_bytes: int
    n: int = 1
    context_parts: frozenset[tuple[int, int]] = frozenset()  # trusted retrieved-context parts (message, part)

    @property
    def max_output_tokens(self) -> int:
        """The most completion tokens the request may produce (every choice at its bound)."""
        return self.n * self.max_tokens


def _output_bound(payload: dict[str, Any], name: str, ceiling: int) -> int | None:
    value = payload.get(name)
    if value is None:
        payload.pop(name, None)
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad(name, f"{name} must be a positive integer")
    if value > ceiling:
        raise bad(name, f"{name} must be at most {ceiling}")
    return value


def _max_tokens(kind: Kind, payload: dict[str, Any], default: int, ceiling: int) -> int:
    """The output bound, written back so the upstream sees the same number the reservation used."""
    legacy = _output_bound(payload, "max_tokens", ceiling)
    current = _output_bound(payload, "max_completion_tokens", ceiling) if kind == "chat" else None
    if legacy is not None and current is not None and legacy != current:
        raise APIError(
            400,
            "conflicting_max_tokens",
            f"max_tokens ({legacy}) and max_completion_tokens ({current}) differ; send one of them",
            param="max_completion_tokens",
        )
    if current is not None:
        payload.pop("max_tokens", None)  # one bound upstream: newer OpenAI models refuse max_tokens
        return current
    # Bounding every request is what makes its cost reservable up front.
    value = legacy if legacy is not None else default
    payload["max_tokens"] = value
    return value


def parse_request(kind: Kind, raw: bytes, default_max_tokens: int, max_output_tokens: int = 131_072) -> ClientRequest:
    """Read the JSON body and the fields routing and admission act on; `check_request` validates the rest."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise bad("body", "request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model or len(model) > 256:
        raise APIError(400, "invalid_request", "model is required (a non-empty string)", param="model")
    if kind == "completion" and "prompt" not in payload:
        raise APIError(400, "invalid_request", "prompt is required (a string)", param="prompt")
    if kind == "chat" and "messages" not in payload:
        raise APIError(400, "invalid_request", "messages must be a non-empty list", param="messages")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise APIError(400, "invalid_request", "stream must be true or false", param="stream")
    max_tokens = _max_tokens(kind, payload, default_max_tokens, max_output_tokens)
    options = payload.get("stream_options")
    wants_usage = bool(isinstance(options, dict) and options.get("include_usage") is True)
    return ClientRequest(kind, model, stream, wants_usage, max_tokens, payload, len(raw))


def check_request(req: ClientRequest, route: ModelRoute, max_messages: int, trusted: bool = False) -> None:
    """Hold the body to the allow-list of its endpoint and to what the model's route accepts.

    `trusted`: the request presented a platform service token, so its retrieved-context marks are honoured;
    a mark without one is refused (a client must not choose the milder check for its own text)."""
    payload = req.payload
    check_fields(req.kind, payload, route.extra_fields)
    if req.kind == "chat":
        check_messages(payload["messages"], max_messages, route.content_parts)
        marked = take_context_marks(payload["messages"])
        if marked and not trusted:
            i, j = min(marked)
            raise APIError(
                403,
                "untrusted_context",
                f"content parts marked `{CONTEXT_MARK}` are accepted only from platform services "
                "(x-llmops-service-token); send the text without the mark",
                param=f"messages[{i}].content[{j}].{CONTEXT_MARK}",
            )
        req.context_parts = marked
    elif payload.get("prompt") is None:
        raise bad("prompt", "prompt is required (a string)")
    n = payload.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= route.max_n:
            raise bad("n", f"must be an integer from 1 to {route.max_n} for model '{route.name}'")
        req.n = n
