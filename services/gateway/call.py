"""One request in flight through the gateway (`Call`, the stages' RequestContext), and what it leaves behind: span
attributes and a trace event."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from llmops_common.request_id import current_request_id
from llmops_common.telemetry import current_trace_id, set_span_attributes
from llmops_common.trace_schema import GuardrailResult, TraceEvent
from services.gateway.cache import Prefetch
from services.gateway.guardrails import Verdict
from services.gateway.keys import KeyRecord
from services.gateway.limits import Reservation
from services.gateway.pricing import nano_to_usd
from services.gateway.requests import ClientRequest
from services.gateway.routes_config import CacheFields
from services.gateway.routing import ModelRoute
from services.gateway.semantic_cache import Probe
from services.gateway.upstream import UpstreamResponse


@dataclass
class Call:
    """Everything known about one request while it is in flight: made by the admit stage, read and written by
    every later stage (services/gateway/stages)."""

    record: KeyRecord
    req: ClientRequest
    route: ModelRoute
    reservation: Reservation
    started: float
    up: UpstreamResponse | None = None
    ttft_s: float | None = None
    response_text: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    input_redacted: bool = False  # the payload now holds the guardrails' redacted text
    input_withheld: bool = False  # refused at the input check (or not checked): its text must not be stored
    output_blocked: bool = False  # the answer was blocked: it must not be stored either
    recorded: bool = False  # metrics, settlement and event are done (exactly once per call)
    prefetch: Prefetch | None = None  # the cache read started before the reservation (cacheable requests)
    cache_policy: CacheFields | None = None  # the cache settings, when this request may be answered from it
    probe: Probe | None = None  # the semantic lookup of a cacheable miss: its vector is indexed if stored
    cache_key: str | None = None  # a cacheable request that missed: its answer may be stored under this key
    cached_cost: int | None = None  # served from the cache: what the hit is charged (nano-USD; no tokens)
    mean_logprob: float | None = None  # the engine's usage.mean_logprob (routes with `mean_logprob: true`)

    def guardrails_header(self) -> str:
        """`input=redact,output=allow` for the x-llmops-guardrails header."""
        return ",".join(f"{v.stage}={v.decision}" for v in self.verdicts)


def usage_tokens(usage: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens of an OpenAI usage object (missing counts are 0)."""
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def mean_logprob(usage: dict[str, Any]) -> float | None:
    """usage.mean_logprob from the inference service, when it is a finite number (anything else: unknown)."""
    value = usage.get("mean_logprob")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def span_usage(call: Call, usage: dict[str, Any]) -> None:
    """GenAI semantic-convention attributes on the request's span; the answer's mean log-probability on the call.

    Both relay paths (whole answer and stream) call this once with the final usage, before the trace event."""
    call.mean_logprob = mean_logprob(usage)
    prompt_tokens, completion_tokens = usage_tokens(usage)
    set_span_attributes(
        {
            "gen_ai.operation.name": "chat" if call.req.kind == "chat" else "text_completion",
            "gen_ai.request.model": call.req.model,
            "gen_ai.request.max_tokens": call.req.max_tokens,
            "gen_ai.request.choice.count": call.req.n,
            "gen_ai.usage.input_tokens": prompt_tokens,
            "gen_ai.usage.output_tokens": completion_tokens,
            "llmops.team": call.record.team,
            "llmops.project": call.record.project,
            "llmops.deployment": call.up.deployment.name if call.up else None,
            "llmops.mean_logprob": call.mean_logprob,
        }
    )


def trace_event(
    call: Call,
    status: int,
    prompt_tokens: int,
    completion_tokens: int,
    cost: int,
    elapsed: float,
    error_code: str | None,
    model_version: str | None,
) -> TraceEvent:
    """The request's trace event (llmops_common.trace_schema), read by the feedback service."""
    payload = call.req.payload
    # Nothing raw leaves the gateway when the guardrails redacted (the payload holds the redacted text by now)
    # or refused the request (then no request text is stored at all: it may hold what the policy blocks).
    prompt = None
    if not call.input_withheld:
        prompt = payload.get("messages") if call.req.kind == "chat" else payload.get("prompt")
    response = None if call.output_blocked else ("".join(call.response_text) or None)
    return TraceEvent(
        request_id=current_request_id() or f"gw-{time.time_ns()}",
        trace_id=current_trace_id(),
        ts=time.time(),
        team=call.record.team,
        project=call.record.project,
        key_id=call.record.key_id,
        model=call.req.model,
        model_version=model_version,
        deployment=call.up.deployment.name if call.up else None,
        endpoint="chat" if call.req.kind == "chat" else "completions",
        status=status,
        error_code=error_code,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=nano_to_usd(cost),
        latency_ms=round(elapsed * 1000, 3),
        ttft_ms=round(call.ttft_s * 1000, 3) if call.ttft_s is not None else None,
        stream=call.req.stream,
        guardrails=[GuardrailResult.model_validate(v.as_event()) for v in call.verdicts],
        prompt=prompt,
        response=response,
        redacted=call.input_redacted,
        withheld=[name for name, gone in (("prompt", call.input_withheld), ("response", call.output_blocked)) if gone],
        cached=call.cached_cost is not None,
        mean_logprob=None if call.output_blocked else call.mean_logprob,  # a withheld answer is not labelled
    )
