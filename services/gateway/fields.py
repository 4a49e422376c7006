"""The allow-list of OpenAI request fields per endpoint, each with its bounds.

The gateway forwards only what it knows: a field it does not validate could change what the engine does or what
a request costs (llama.cpp's `n_probs` turned a 475-byte answer into 93.6 MB; `n_predict` overrode the
`max_tokens` the reservation was made for). Unknown fields are refused by name, never silently dropped, so a
caller learns at once that a field has no effect here. Engine-specific extras pass only where the model's route
declares them (routes file `extra_fields`), and only as scalars.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from llmops_common.errors import APIError

Check = Callable[[str, Any], None]

MAX_STOP = 4
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 300
MAX_TOP_LOGPROBS = 5
MAX_TOOLS = 128
MAX_PROMPTS = 16
MAX_METADATA = 16
MAX_EXTRA_STRING = 256
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def bad(param: str, message: str, code: str = "invalid_request") -> APIError:
    """A 400 naming the parameter."""
    return APIError(400, code, f"{param}: {message}", param=param)


def _number(lo: float, hi: float) -> Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad(name, "must be a number")
        if not lo <= value <= hi:
            raise bad(name, f"must be between {lo:g} and {hi:g}")

    return check


def _integer(lo: int, hi: int) -> Check:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(name, "must be an integer")
        if not lo <= value <= hi:
            raise bad(name, f"must be between {lo} and {hi}")

    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise bad(name, "must be true or false")


def _string(max_chars: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or len(value) > max_chars:
            raise bad(name, f"must be a string of at most {max_chars} characters")

    return check


def _stop(name: str, value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not 0 < len(items) <= MAX_STOP:
        raise bad(name, f"must be a string or a list of 1 to {MAX_STOP} strings")
    if not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in items):
        raise bad(name, f"each stop sequence must be a non-empty string of at most {MAX_STOP_CHARS} characters")


def _logit_bias(name: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > MAX_LOGIT_BIAS:
        raise bad(name, f"must be an object of at most {MAX_LOGIT_BIAS} token ids")
    for token, bias in value.items():
        if not token.isdigit() or len(token) > 10:
            raise bad(name, f"keys must be token ids (digits), got {token[:20]!r}")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise bad(name, "values must be numbers between -100 and 100")


def _metadata(name: str, value: Any) -> None:
    ok = (
        isinstance(value, dict)
        and len(value) <= MAX_METADATA
        and all(
            isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in value.items()  # keys are strings in JSON already
        )
    )
    if not ok:
        raise bad(name, f"must be at most {MAX_METADATA} string pairs (keys <= 64, values <= 512 characters)")


def _stream_options(name: str, value: Any) -> None:
    if not isinstance(value, dict) or set(value) - {"include_usage"}:
        raise bad(name, 'must be {"include_usage": true|false}')
    if "include_usage" in value:
        _boolean(f"{name}.include_usage", value["include_usage"])


def _response_format(name: str, value: Any) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise bad(name, 'must be {"type": "text" | "json_object" | "json_schema", ...}')
    allowed = {"type", "json_schema"} if kind == "json_schema" else {"type"}
    if set(value) - allowed:
        raise bad(name, f"unexpected key(s) {', '.join(sorted(set(value) - allowed))}")
    if kind == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise bad(f"{name}.json_schema", "must be an object (name, schema, strict)")


def _function_name(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _FUNCTION_NAME.match(value):
        raise bad(name, "must be 1-64 characters of letters, digits, _ or -")


def _tools(name: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise bad(name, f"must be a list of at most {MAX_TOOLS} tools")
    for i, tool in enumerate(value):
        where = f"{name}[{i}]"
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise bad(where, 'must be {"type": "function", "function": {...}}')
        if set(tool) - {"type", "function"} or set(fn) - {"name", "description", "parameters", "strict"}:
            raise bad(where, "unexpected key(s); a function has name, description, parameters, strict")
        _function_name(f"{where}.function.name", fn.get("name"))
        if "description" in fn:
            _string(4096)(f"{where}.function.description", fn["description"])
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise bad(f"{where}.function.parameters", "must be a JSON schema object")
        if "strict" in fn:
            _boolean(f"{where}.function.strict", fn["strict"])


def _tool_choice(name: str, value: Any) -> None:
    if value in ("none", "auto", "required"):
        return
    fn = value.get("function") if isinstance(value, dict) else None
    if not (
        isinstance(value, dict) and value.get("type") == "function" and isinstance(fn, dict) and set(fn) == {"name"}
    ):
        raise bad(name, 'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}')
    _function_name(f"{name}.function.name", fn["name"])


def _prompt(name: str, value: Any) -> None:
    # Token-id prompts are refused: the guardrails cannot read them, so they would walk around the input check.
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PROMPTS or not all(isinstance(p, str) for p in value):
        raise bad(name, f"must be a string or a list of 1 to {MAX_PROMPTS} strings")


def _present(name: str, value: Any) -> None:
    """Checked elsewhere (model, messages, n, max_tokens): only listed here so they are known."""


_COMMON: dict[str, Check] = {
    "model": _present,
    "stream": _boolean,
    "stream_options": _stream_options,
    "max_tokens": _present,
    "n": _present,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "stop": _stop,
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _logit_bias,
    "seed": _integer(-(2**63), 2**63 - 1),
    "user": _string(256),
}

FIELDS: dict[str, dict[str, Check]] = {
    "chat": {
        **_COMMON,
        "messages": _present,
        "max_completion_tokens": _present,
        "logprobs": _boolean,
        "top_logprobs": _integer(0, MAX_TOP_LOGPROBS),
        "response_format": _response_format,
        "tools": _tools,
        "tool_choice": _tool_choice,
        "parallel_tool_calls": _boolean,
        "metadata": _metadata,
        "store": _boolean,
    },
    "completion": {
        **_COMMON,
        "prompt": _prompt,
        "logprobs": _integer(0, MAX_TOP_LOGPROBS),
        "echo": _boolean,
        "suffix": _string(4096),
    },
}
STANDARD_FIELDS = frozenset(FIELDS["chat"]) | frozenset(FIELDS["completion"])
ENDPOINT = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


def _extra(name: str, value: Any) -> None:
    """Route-declared engine extras: scalars only, so no extra can carry a large structure to the engine."""
    if isinstance(value, str):
        if len(value) > MAX_EXTRA_STRING:
            raise bad(name, f"must be at most {MAX_EXTRA_STRING} characters")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise bad(name, "must be a finite number")
    elif not (value is None or isinstance(value, bool | int)):
        raise bad(name, "engine-specific fields take a number, a boolean or a short string")


def check_fields(kind: str, payload: dict[str, Any], extras: frozenset[str]) -> None:
    """Refuse unknown fields by name and validate every known one (None means "not set", as OpenAI does)."""
    known = FIELDS[kind]
    for name, value in payload.items():
        check = known.get(name)
        if check is None:
            if name not in extras:
                raise APIError(
                    400,
                    "unknown_field",
                    f"unknown field '{name}' for {ENDPOINT[kind]}: the gateway forwards only the OpenAI fields it "
                    "validates (see the gateway README); engine-specific fields pass only where the model's route "
                    "declares them",
                    param=name,
                )
            _extra(name, value)
        elif value is not None:
            check(name, value)
