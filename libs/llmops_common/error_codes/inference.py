"""The model server's codes (:8001). Through the gateway a caller sees them relayed, or as the attempts of
`no_deployment_available`."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

CODES = (
    ErrorCode(
        "server_overloaded",
        429,
        "admission control: every generation slot is busy and the queue is full, or the wait for a slot would be "
        "longer than the request's budget (`INFERENCE_QUEUE_WAIT_FACTOR` x its expected service time), or a slot "
        "did not free in time",
        "honour `Retry-After`. Through the gateway this shows as `no_deployment_available … status_429` (some "
        "deployments) or `upstream_overloaded` (all of them)",
        "server busy: {running} generations running and {queued} queued (limits {max_running} and {max_queued})",
    ),
    ErrorCode(
        "context_length_exceeded",
        400,
        "the prompt plus `max_tokens` does not fit the model's context length (relayed by the gateway)",
        "lower `max_tokens`, shorten the prompt",
        "max_tokens={max_tokens} does not fit this model's context length of {context_length} tokens "
        "(prompt + max_tokens must fit)",
    ),
    ErrorCode(
        "model_not_ready",
        503,
        "the model is still loading",
        "retry after `Retry-After` (2 s); `make status` shows when inference is ready",
        "the model is still loading; retry shortly",
    ),
    ErrorCode(
        "engine_unavailable",
        503,
        "the engine failed, or its process exited / its upstream is unreachable",
        "`make logs S=inference`; the model file or the llama.cpp build. A llama.cpp process that died (out of "
        "memory, killed) is started again after `INFERENCE_ENGINE_RESTART_S` (1 s, backing off while it keeps "
        "failing); if it fails again and again, the cause is in its last output lines",
        "the engine of model version {version} is not available (its process exited, or its upstream is "
        "unreachable); see the service log",
    ),
)
