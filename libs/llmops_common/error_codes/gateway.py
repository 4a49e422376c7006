"""The gateway's codes (:8000): keys, request checks, limits and budgets, guardrails, deployments, Redis.
The batch API's are in gateway_batch.py."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

_LIMIT_FIX = (
    "wait `Retry-After` seconds (windows are aligned minutes), or raise the limit. The `openai` client retries "
    "429s by itself; rag's queries and ingestions count against the same limits"
)
_BUDGET_FIX = (
    "budgets are checked against the request's **upper bound** (body size + `max_tokens`): lower `max_tokens`, "
    "or raise the budget (`POST /admin/teams`, `PATCH /admin/keys/{id}`). A request without `max_tokens` is "
    "reserved at `GATEWAY_DEFAULT_MAX_TOKENS` (256)"
)
_RATE_MESSAGE = (
    "rate limit reached for the {limit}: {used} of {maximum} {unit} used this minute, this request needs "
    "{requested}; retry in {retry_after_s}s"
)
_BUDGET_MESSAGE = "{limit} exhausted: spent ${used} of ${maximum}; this request may cost up to ${requested}"

CODES = (
    # --- who is calling
    ErrorCode(
        "missing_api_key",
        401,
        "no `Authorization: Bearer <key>` header (rag and feedback answer the same)",
        "add the header; `set -a; . .llmops/env; set +a` gives `$LLMOPS_API_KEY`",
        "no API key: send `Authorization: Bearer <key>`",
    ),
    ErrorCode(
        "invalid_api_key",
        401,
        "the gateway does not know this key (in a batch: the key that created it was deleted)",
        "a typo, or a key from another platform (keys live in this Redis); create one with the admin API",
        "the API key is not valid",
    ),
    ErrorCode(
        "revoked_api_key",
        401,
        "the key was revoked; every service refuses it within a second",
        "revocation is immediate and final; create a new key",
        "the API key has been revoked",
    ),
    ErrorCode(
        "invalid_admin_key",
        401,
        "an admin route called without the admin key",
        "use `$LLMOPS_ADMIN_KEY` (admin routes), not a team key",
        "the admin API needs `Authorization: Bearer <admin key>`",
    ),
    ErrorCode(
        "metrics_token_required",
        401,
        "the gateway's `/metrics` lists every team's spend, so it needs its own token",
        '`set -a; . .llmops/env; set +a` then `-H "Authorization: Bearer $LLMOPS_METRICS_TOKEN"`; Prometheus '
        "scrapes with the same token",
        "the gateway's /metrics needs `Authorization: Bearer <GATEWAY_METRICS_TOKEN>`",
    ),
    ErrorCode(
        "team_not_found",
        404,
        "an admin call names a team that does not exist",
        "create the team before its keys (`POST /admin/teams`)",
        "team '{team}' does not exist; create it first with POST /admin/teams",
    ),
    ErrorCode(
        "key_not_found",
        404,
        "an admin call names a key id that does not exist",
        "`GET /admin/keys` lists the key ids (`key_…`, not the secret key)",
        "key '{key_id}' does not exist",
    ),
    # --- the request itself
    ErrorCode(
        "invalid_json",
        400,
        "the body is not JSON",
        "shell quoting: wrap the body in single quotes, or use `-d @file.json`",
        "request body is not valid JSON: {reason}",
    ),
    ErrorCode(
        "unknown_field",
        400,
        "a field the gateway does not forward (it forwards only the OpenAI fields it validates)",
        "a typo, or an engine-specific field: remove it, or declare it for the model in "
        "`services/gateway/config/routes.yaml` (the gateway README lists the fields)",
        "unknown field '{field}' for {path}: the gateway forwards only the OpenAI fields it validates …",
    ),
    ErrorCode(
        "conflicting_max_tokens",
        400,
        "`max_tokens` and `max_completion_tokens` are both set, to different values",
        "send one bound (`max_completion_tokens` is the newer name)",
        "max_tokens ({max_tokens}) and max_completion_tokens ({max_completion_tokens}) differ; send one of them",
    ),
    ErrorCode(
        "too_many_messages",
        (400, 413),
        "400: more messages than the gateway accepts (`GATEWAY_MAX_MESSAGES`); 413: more than one guardrails "
        "check accepts (`GUARDRAILS_MAX_MESSAGES`), relayed by the gateway",
        "summarise or drop old turns",
        "{count} messages; at most {limit} are accepted per request",
    ),
    ErrorCode(
        "untrusted_context",
        403,
        "a content part carries the retrieved-context mark, which only platform services may set",
        "send the text without the mark (rag sets it for the passages it retrieved)",
        "content parts marked `{mark}` are accepted only from platform services (x-llmops-service-token); "
        "send the text without the mark",
    ),
    ErrorCode(
        "model_not_found",
        404,
        "the model name is unknown here (gateway: not in routes.yaml; inference: not the served model; "
        "registry: not registered)",
        "use a name from `GET /v1/models`; new models are added in `services/gateway/config/routes.yaml`; names "
        "are case-sensitive",
        "model '{model}' does not exist; available: {available}",
    ),
    ErrorCode(
        "model_not_allowed",
        403,
        "the key may not use this model",
        "the key's `allowed_models`; `PATCH /admin/keys/{key_id}`",
        "this key may not use model '{model}'; allowed: {allowed}",
    ),
    # --- limits and budgets (the code is the limit's name in services/gateway/limits.py + `_exceeded`)
    ErrorCode("key_rpm_exceeded", 429, "the key's requests per minute are used up", _LIMIT_FIX, _RATE_MESSAGE),
    ErrorCode("team_rpm_exceeded", 429, "the team's requests per minute are used up", _LIMIT_FIX, _RATE_MESSAGE),
    ErrorCode("key_tpm_exceeded", 429, "the key's tokens per minute are used up", _LIMIT_FIX, _RATE_MESSAGE),
    ErrorCode("team_tpm_exceeded", 429, "the team's tokens per minute are used up", _LIMIT_FIX, _RATE_MESSAGE),
    ErrorCode(
        "key_budget_exceeded",
        402,
        "the request could cost more than the key's budget has left",
        _BUDGET_FIX,
        _BUDGET_MESSAGE,
    ),
    ErrorCode(
        "team_budget_exceeded",
        402,
        "the request could cost more than the team's budget has left",
        _BUDGET_FIX,
        _BUDGET_MESSAGE,
    ),
    # --- guardrails
    ErrorCode(
        "guardrail_blocked",
        400,
        "the team's guardrail policy blocked the input (or the output, in a stream as an error event); the "
        "envelope carries `stage` and `findings`",
        "each finding names the detector, span and reason (`message`: the index of the message it is in; every "
        "message of every role is checked, tool results as content). On rag answers see the section below",
        "the input was blocked by the guardrails: {findings}",
    ),
    ErrorCode(
        "guardrails_unavailable",
        503,
        "the guardrails service did not answer in time and the team's policy is fail-closed (rag: its content "
        "check of the passages)",
        "guardrails is down or slower than the policy's `timeout_ms`: `make status`, `make logs S=guardrails`",
        "the guardrails service did not answer the input check ({reason}) and this team's policy is "
        "fail-closed; retry shortly",
    ),
    # --- deployments
    ErrorCode(
        "no_deployment_available",
        (502, 503),
        "every deployment of the model failed (502) or has an open circuit (503)",
        "`status_429` in the message means inference refused for load (`server_overloaded`; a 429 never opens a "
        "circuit); `connection_error` "
        "means it is down: `make status`. A circuit re-tries after `circuit_cooldown_s` (30 s)",
        "no deployment of '{model}' could serve the request: {attempts}",
    ),
    ErrorCode(
        "upstream_overloaded",
        429,
        "every deployment of the model answered that it is at capacity (or has an open circuit)",
        "honour `Retry-After` (the soonest the deployments gave, from their measured service time); if it lasts, "
        "the model needs more capacity (more deployments in routes.yaml, or `INFERENCE_MAX_RUNNING` / "
        "`INFERENCE_MAX_QUEUED` / `INFERENCE_QUEUE_WAIT_FACTOR`)",
        "every deployment of '{model}' is at capacity; retry shortly",
    ),
    ErrorCode(
        "upstream_error",
        None,
        "the deployment answered an error that is not an error envelope; the status is the deployment's own",
        "look at the deployment's log",
        "the deployment answered {status}: {text}",
    ),
    ErrorCode(
        "upstream_client_error",
        None,
        "only in the trace event's `error_code`: the deployment answered 4xx and the caller got its envelope",
        "the caller's answer carries the deployment's own code (e.g. `context_length_exceeded`)",
    ),
    ErrorCode(
        "upstream_invalid_response",
        502,
        "the deployment answered 200 with something that is not JSON",
        "a deployment that is not an OpenAI-compatible server, or a proxy in between: look at its log",
        "the deployment answered 200 with invalid JSON",
    ),
    ErrorCode(
        "upstream_stream_error",
        502,
        "the deployment's stream broke or ended without `[DONE]` (an error event in the stream)",
        "the engine died or was restarted mid-answer: `make logs S=inference`; retry the request",
        "the deployment's stream ended without [DONE]",
    ),
    ErrorCode(
        "upstream_response_too_large",
        502,
        "the deployment's answer is over `GATEWAY_MAX_RESPONSE_BYTES`; it was not relayed",
        "lower `max_tokens`; in a stream it arrives as an error event. Raise `GATEWAY_MAX_RESPONSE_BYTES` only "
        "for a deployment you trust",
        "the deployment's answer is larger than {limit} bytes (GATEWAY_MAX_RESPONSE_BYTES); it was not relayed",
    ),
    # --- the state store (Redis)
    ErrorCode(
        "state_store_full",
        507,
        "(with `Retry-After: 60`) Redis reached its memory cap and refuses writes (policy `noeviction`: "
        "evicting would drop limits, spend and reservations); nothing was charged or stored. 507, not 503: "
        "retrying at once does not help",
        "look: `redis-cli INFO memory` (`used_memory` vs `maxmemory`), `redis-cli --bigkeys`. Free: delete batch "
        "files (`DELETE /v1/files/{id}`), trim the trace stream (`XTRIM llmops:events MAXLEN ~ 100000`; "
        "`GATEWAY_EVENTS_MAXLEN`), or raise the cap: `LLMOPS_REDIS_MAXMEMORY` (default `512mb`; `make up` applies "
        "it), `REDIS_MAXMEMORY` in compose, `redis.maxmemory` in the Helm values",
        "the gateway's state store (Redis) is full and refuses new writes (its maxmemory, policy noeviction); "
        "nothing was charged or stored. Deleting batch files frees space; an operator must free memory or raise "
        "the cap (LLMOPS_REDIS_MAXMEMORY / --maxmemory)",
    ),
    ErrorCode(
        "state_store_unavailable",
        503,
        "Redis cannot be reached at all (not full: see `state_store_full`)",
        "`redis-cli ping`; `make status`; start Redis (`make up` starts one when none runs). Retry after "
        "`Retry-After` (2 s)",
        "the gateway cannot reach Redis (keys, limits, spend); retry shortly",
    ),
)
