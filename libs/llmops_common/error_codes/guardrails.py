"""The guardrails service's codes (:8005). Its 413s reach gateway callers relayed ("the input is too large to
check: …"); `too_many_messages` is listed under the gateway, `not_ready` under rag."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

CODES = (
    ErrorCode(
        "unknown_policy",
        400,
        "the check names a policy that `policies.yaml` does not define",
        "`GET /v1/policies` lists them",
        "policy {policy} is not defined",
    ),
    ErrorCode(
        "text_too_large",
        413,
        "the texts of one check hold more characters in all than `GUARDRAILS_MAX_TEXT_CHARS` (the gateway relays "
        "it for a chat request)",
        "send less text; the bound is over all the texts of one call (every message, or every `texts` item). "
        "Raise the guardrails limits only if the model reads that much",
        "{param} hold {total} characters in all; the limit is {limit} (GUARDRAILS_MAX_TEXT_CHARS)",
    ),
    ErrorCode(
        "too_many_texts",
        413,
        "more `texts` in one content check than `GUARDRAILS_MAX_MESSAGES`",
        "fewer texts per call",
        "{count} texts in one check; the limit is {limit} (GUARDRAILS_MAX_MESSAGES)",
    ),
    ErrorCode(
        "context_too_long",
        413,
        "the groundedness `context` of an output check is over `GUARDRAILS_MAX_CONTEXT_CHARS`",
        "send fewer or shorter passages as context",
        "context exceeds {limit} characters",
    ),
)
