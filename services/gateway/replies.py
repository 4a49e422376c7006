"""How the gateway words its refusals and relays upstream errors: always the one error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from redis.exceptions import OutOfMemoryError, RedisError

from llmops_common.errors import APIError, error_body
from llmops_common.sse import DONE
from services.gateway.limits import LIMIT_LABELS, LimitExceeded
from services.gateway.pricing import nano_to_usd


def limit_error(exc: LimitExceeded) -> APIError:
    """A 429 (rate) or 402 (budget) naming the limit and the numbers."""
    label = LIMIT_LABELS[exc.limit][0]
    if exc.is_budget:
        return APIError(
            402,
            f"{exc.limit}_exceeded",
            f"{label} exhausted: spent ${nano_to_usd(exc.used):.6f} of ${nano_to_usd(exc.maximum):.6f}; "
            f"this request may cost up to ${nano_to_usd(exc.requested):.6f}",
        )
    unit = "requests" if exc.limit.endswith("rpm") else "tokens"
    return APIError(
        429,
        f"{exc.limit}_exceeded",
        f"rate limit reached for the {label}: {exc.used} of {exc.maximum} {unit} used this minute, this request "
        f"needs {exc.requested}; retry in {exc.retry_after_s}s",
        headers={"retry-after": str(exc.retry_after_s)},
    )


STATE_STORE_FULL = 507  # Redis refused a write at its maxmemory (policy noeviction); see docs/troubleshooting.md


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write because it reached maxmemory (an OOM reply, also from inside a script)."""
    return isinstance(exc, OutOfMemoryError) or (isinstance(exc, RedisError) and "OOM command not allowed" in str(exc))


def state_store_error(exc: RedisError) -> APIError:
    """What a caller sees when Redis fails: 507 state_store_full when it is full (writes are refused until memory
    is freed: retrying at once does not help), else 503 state_store_unavailable (it should be back shortly)."""
    if is_out_of_memory(exc):
        return APIError(
            STATE_STORE_FULL,
            "state_store_full",
            "the gateway's state store (Redis) is full and refuses new writes (its maxmemory, policy noeviction); "
            "nothing was charged or stored. Deleting batch files frees space; an operator must free memory or raise "
            "the cap (LLMOPS_REDIS_MAXMEMORY / --maxmemory)",
            headers={"retry-after": "60"},
        )
    return APIError(
        503,
        "state_store_unavailable",
        "the gateway cannot reach Redis (keys, limits, spend); retry shortly",
        headers={"retry-after": "2"},
    )


def as_envelope(status: int, body: bytes) -> bytes:
    """Pass an upstream error through, wrapping non-envelope bodies so callers always get one shape."""
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return body
    except orjson.JSONDecodeError:
        pass
    text = body[:500].decode("utf-8", "replace")
    return orjson.dumps(error_body(status, "upstream_error", f"the deployment answered {status}: {text}"))


def error_frame(err: APIError) -> bytes:
    """An SSE error event followed by [DONE]: how a stream that already started is stopped."""
    return b"data: " + orjson.dumps(error_body(err.status, err.code, err.message, **err.extra)) + b"\n\n" + DONE


def replace_answer(data: dict[str, Any], text: str) -> None:
    """Put a redacted answer in place of every choice's text."""
    for choice in data.get("choices") or ():
        if isinstance(choice.get("message"), dict):
            choice["message"]["content"] = text
        elif "text" in choice:
            choice["text"] = text
