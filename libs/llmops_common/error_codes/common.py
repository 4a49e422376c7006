"""Codes every service can answer: the shared handlers (llmops_common/errors.py), the body limit, the key lookup
at the gateway (llmops_common/identity.py) and the internal services' tokens (llmops_common/service_auth.py)."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

CODES = (
    ErrorCode(
        "invalid_request",
        400,
        "the body or a parameter failed validation; `param` names the field",
        "fix the field the message names (`param`). The registry and feedback refuse unknown fields; a registry "
        "model version needs `format`, `artifact_uri`, `engine`, `context_length` and `license`; feedback takes "
        "exactly one of `thumbs` or `rating`",
        "{param}: {reason}",
    ),
    ErrorCode(
        "request_too_large",
        413,
        "the request body is over the service's size limit",
        "send less; each service has a `<PREFIX>MAX_BODY_BYTES` setting (the gateway's is `GATEWAY_MAX_BODY_BYTES`)",
        "request body exceeds the limit of {limit} bytes",
    ),
    ErrorCode(
        "not_found",
        404,
        "no route at this path (or, in the registry, an MLflow object that does not exist)",
        "check the path: e.g. `/v1/promotions//approve` when a shell variable was empty because the request "
        "before it failed",
        "Not Found",
    ),
    ErrorCode(
        "method_not_allowed",
        405,
        "the path exists but not with this HTTP method",
        "the service's `/docs` (or its README) lists each route's method",
        "Method Not Allowed",
    ),
    ErrorCode(
        "http_error",
        400,
        "another HTTP error raised by the web framework itself (its own status; 400 is the usual one)",
        "the message is the framework's; the status says what kind of problem it is",
        "{detail}",
    ),
    ErrorCode(
        "internal_error",
        500,
        "a bug: the service raised an exception it did not expect (in a batch line: the line failed that way)",
        "the traceback is in the service log under the request id: `grep req_… .llmops/logs/*.log`; report it",
        "internal error; see the service log",
    ),
    ErrorCode(
        "gateway_unavailable",
        503,
        "rag or feedback could not ask the gateway who the key belongs to (`/v1/me`), or rag could not have a "
        "query or ingestion metered (`POST /v1/usage/admit`)",
        "start the gateway (`make status`); the answer carries `Retry-After: 5`. A gateway that answers 404 on "
        "`/v1/usage/admit` is older than the rag service: upgrade it",
        "cannot verify the key with the gateway: {reason}",
    ),
)

# The internal services (inference, guardrails, rag's /v1/prompts) answer only the platform's own callers.
_SERVICE_TOKEN_MESSAGE = (
    "the {service} service answers only other platform services: send its service token as "
    "`Authorization: Bearer <token>` (clients reach the platform through the gateway)"
)
SERVICE_TOKEN_CODES = (
    ErrorCode(
        "service_token_required",
        401,
        "a direct call to an internal service without its service token",
        '`set -a; . .llmops/env; set +a` and add `-H "Authorization: Bearer $LLMOPS_GUARDRAILS_TOKEN"` (or the '
        "inference / rag token). Clients normally go through the gateway instead",
        _SERVICE_TOKEN_MESSAGE,
    ),
    ErrorCode(
        "invalid_service_token",
        401,
        "the token is not one the service holds (same message as `service_token_required`)",
        "a stale `.llmops/env`, or a caller configured with another token (`GATEWAY_GUARDRAILS_TOKEN` must be "
        "one of `GUARDRAILS_SERVICE_TOKEN`'s values)",
        _SERVICE_TOKEN_MESSAGE,
    ),
)
