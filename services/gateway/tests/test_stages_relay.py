"""Unit tests of the stages from the relay on (services/gateway/stages), in-process with fakes: relay (whole
answers and streams), check output, settle and emit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llmops_common.errors import APIError
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import Verdict
from services.gateway.stages import CheckOutput, Completed, Emit, Relay, Settle, Streaming
from services.gateway.stages.base import Background
from services.gateway.tests import stage_fakes as f

_ANSWER = {"choices": [{"message": {"content": "hello there"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}


def _relay(finish: f.Finish, guard: f.Guard | None = None, limit: int = 1 << 20, window: int = 4) -> Relay:
    output = CheckOutput(GuardrailChecks(guard, window)) if guard is not None else None  # type: ignore[arg-type]
    return Relay(f.metrics(), output, limit, finish, Background(), lambda model: "7")


async def _whole(relay: Relay, ctx: Any) -> Completed:
    answer = await relay.pre(ctx)
    await relay.background.drain()
    assert isinstance(answer, Completed)
    return answer


async def _drain(relay: Relay, ctx: Any) -> bytes:
    answer = await relay.pre(ctx)
    assert isinstance(answer, Streaming)
    return b"".join([chunk async for chunk in answer.chunks])


# --- relay, whole answers


async def test_relay_answers_with_cost_and_headers_and_settles_in_the_background() -> None:
    finish = f.Finish()
    ctx = f.context(up=f.upstream(f.Response(body=orjson.dumps(_ANSWER)), fallbacks=1))
    answer = await _whole(_relay(finish), ctx)
    assert answer.status == 200 and orjson.loads(answer.body) == _ANSWER
    headers = answer.headers
    assert headers["x-llmops-deployment"] == "d1" and headers["x-llmops-model-version"] == "7"
    assert headers["x-llmops-fallbacks"] == "1" and "x-llmops-cache" not in headers
    assert float(headers["x-llmops-cost-usd"]) == pytest.approx((5 * 1.0 + 3 * 2.0) / 1e6)
    assert finish.calls == [(200, _ANSWER["usage"], None)] and ctx.response_text == ["hello there"]


async def test_relay_passes_an_upstream_4xx_on_in_the_envelope() -> None:
    finish = f.Finish()
    ctx = f.context(up=f.upstream(f.Response(400, b'{"error": {"message": "bad"}}')))
    answer = await _whole(_relay(finish), ctx)
    assert answer.status == 400 and "error" in orjson.loads(answer.body)
    assert finish.calls == [(400, None, "upstream_client_error")]


@pytest.mark.parametrize(
    ("body", "limit", "code"),
    [(b"x" * 64, 16, "upstream_response_too_large"), (b"not json", 1 << 20, "upstream_invalid_response")],
)
async def test_relay_charges_the_reserved_bound_for_an_answer_it_cannot_relay(
    body: bytes, limit: int, code: str
) -> None:
    finish, resp = f.Finish(), f.Response(body=body)
    ctx = f.context(up=f.upstream(resp))
    with pytest.raises(APIError) as err:
        await _relay(finish, limit=limit).pre(ctx)
    assert (err.value.status, err.value.code) == (502, code) and resp.released
    ((status, usage, error_code),) = finish.calls
    assert (status, error_code) == (502, code) and usage == {"prompt_tokens": 13, "completion_tokens": 16}


# --- check output (whole answers)


async def test_check_output_block_replaces_the_answer_but_charges_it() -> None:
    finish = f.Finish()
    guard = f.Guard(output=Verdict("output", "block", [{"detector": "pii", "reason": "x", "action": "block"}]))
    ctx = f.context(up=f.upstream(f.Response(body=orjson.dumps(_ANSWER))))
    answer = await _whole(_relay(finish, guard), ctx)
    assert answer.status == 400 and orjson.loads(answer.body)["error"]["code"] == "guardrail_blocked"
    assert answer.headers["x-llmops-guardrails"] == "output=block" and ctx.output_blocked
    assert finish.calls == [(400, _ANSWER["usage"], "guardrail_blocked")]


async def test_check_output_redaction_rewrites_the_answer() -> None:
    guard = f.Guard(output=Verdict("output", "redact", [], "hello [NAME]"))
    ctx = f.context(up=f.upstream(f.Response(body=orjson.dumps(_ANSWER))))
    answer = await _whole(_relay(f.Finish(), guard), ctx)
    assert orjson.loads(answer.body)["choices"][0]["message"]["content"] == "hello [NAME]"
    assert ctx.response_text == ["hello [NAME]"]


async def test_check_output_fail_closed_withholds_and_settles() -> None:
    finish = f.Finish()
    guard = f.Guard(error=APIError(503, "guardrails_unavailable", "down"))
    ctx = f.context(up=f.upstream(f.Response(body=orjson.dumps(_ANSWER))))
    with pytest.raises(APIError):
        await _relay(finish, guard).pre(ctx)
    assert ctx.output_blocked and finish.calls == [(503, _ANSWER["usage"], "guardrails_unavailable")]


# --- relay, streams (with check output by window)


def _chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"delta": {"content": text}}]}


_USAGE = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


async def test_stream_relays_chunks_hides_the_unasked_usage_chunk_and_settles() -> None:
    finish = f.Finish()
    ctx = f.context(f.request(stream=True), up=f.upstream(f.Response(lines=f.sse(_chunk("he"), _chunk("llo"), _USAGE))))
    out = await _drain(_relay(finish), ctx)
    assert out.count(b"data: ") == 3 and out.endswith(b"data: [DONE]\n\n") and b"usage" not in out
    ((status, usage, code),) = finish.calls
    assert (status, code) == (200, None) and usage is not None and usage["cost_usd"] > 0
    assert ctx.ttft_s is not None and ctx.response_text == ["he", "llo"]


async def test_stream_without_done_ends_in_an_error_event() -> None:
    finish = f.Finish()
    ctx = f.context(f.request(stream=True), up=f.upstream(f.Response(lines=f.sse(_chunk("he"), done=False))))
    out = await _drain(_relay(finish), ctx)
    assert b"upstream_stream_error" in out
    assert finish.calls == [(502, {"prompt_tokens": 13, "completion_tokens": 1}, "upstream_stream_error")]


async def test_stream_window_block_ends_the_stream() -> None:
    finish = f.Finish()
    guard = f.Guard(output=Verdict("output", "block", []))
    lines = f.sse(_chunk("abcd"), _chunk("efgh"), _USAGE)
    ctx = f.context(f.request(stream=True), up=f.upstream(f.Response(lines=lines)))
    out = await _drain(_relay(finish, guard, window=4), ctx)
    assert b"guardrail_blocked" in out and b"abcd" not in out and ctx.output_blocked
    assert guard.output_texts == ["abcd"] and finish.calls[0][0] == 400


async def test_stream_checks_the_unchecked_tail_at_the_end() -> None:
    guard = f.Guard()
    lines = f.sse(_chunk("abcd"), _chunk("ef"), _USAGE)
    ctx = f.context(f.request(stream=True), up=f.upstream(f.Response(lines=lines)))
    out = await _drain(_relay(f.Finish(), guard, window=4), ctx)
    assert out.endswith(b"[DONE]\n\n") and guard.output_texts == ["abcd", "abcdef"]


# --- settle and emit


async def test_settle_records_metrics_and_settles_what_was_used() -> None:
    limiter, m = f.Limiter(), f.metrics()
    cost = await Settle(limiter, m, None).finish(f.context(), 200, {"prompt_tokens": 3, "completion_tokens": 40})  # type: ignore[arg-type]
    assert cost == 3 * 1000 + 40 * 2000 and limiter.settled == [(43, cost)] and limiter.writes == []
    labels = {"team": "team-a", "model": f.MODEL}
    assert f.sample(m, "llmops_gateway_requests_total", status="200", **labels) == 1
    assert f.sample(m, "llmops_gateway_tokens_total", kind="completion", **labels) == 40
    assert f.sample(m, "llmops_gateway_usage_over_reservation_total", model=f.MODEL) == 1  # 40 > 16 reserved


async def test_settle_charges_a_cache_hit_its_fraction() -> None:
    limiter = f.Limiter()
    ctx = f.context(cached_cost=123)
    assert await Settle(limiter, f.metrics(), None).finish(ctx, 200, None) == 123  # type: ignore[arg-type]
    assert limiter.settled == [(0, 123)]


@pytest.mark.parametrize("applied", [True, False])
async def test_emit_rides_the_settlement_or_falls_back_to_the_emitter(applied: bool) -> None:
    limiter, emitter, m = f.Limiter(applied=applied), f.Emitter(), f.metrics()
    settle = Settle(limiter, m, Emit(emitter, m, lambda model: "3"))  # type: ignore[arg-type]
    await settle.finish(f.context(), 502, None, error_code="upstream_stream_error")
    ((stream, fields),) = limiter.writes
    event = orjson.loads(fields["event"])
    assert stream == "llmops:events" and event["status"] == 502 and event["model_version"] == "3"
    assert event["error_code"] == "upstream_stream_error"
    assert len(emitter.buffered) == (0 if applied else 1)
    assert f.sample(m, "llmops_gateway_trace_events_emitted_total") == (1 if applied else 0)


async def test_emit_drops_an_event_that_breaks_the_schema_but_still_settles(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from services.gateway.stages import emit

    def broken(*args: Any) -> Any:
        raise ValidationError.from_exception_data("TraceEvent", [])

    monkeypatch.setattr(emit, "trace_event", broken)
    limiter, emitter, m = f.Limiter(), f.Emitter(), f.metrics()
    settle = Settle(limiter, m, Emit(emitter, m, lambda model: None))  # type: ignore[arg-type]
    await settle.finish(f.context(), 200, None)
    assert limiter.settled and limiter.writes == [] and emitter.buffered == []
    assert f.sample(m, "llmops_gateway_trace_events_dropped_total") == 1


@pytest.mark.parametrize(("sent", "reported"), [("12", "12"), (None, "7"), ("not a version!", "7")])
async def test_the_version_that_answered_is_the_deployments_own(sent: str | None, reported: str) -> None:
    """A canary deployment serving the challenger beside production: its x-model-version is what the answer and the
    trace event report, not the registry's production version (7 here); no header, or a malformed one: 7."""
    limiter, m = f.Limiter(), f.metrics()
    headers = {"x-model-version": sent} if sent is not None else {}
    ctx = f.context(up=f.upstream(f.Response(body=orjson.dumps(_ANSWER), headers=headers)))
    settle = Settle(limiter, m, Emit(f.Emitter(), m, lambda model: "7"))  # type: ignore[arg-type]
    relay = Relay(m, None, 1 << 20, settle.finish, Background(), lambda model: "7")
    answer = await _whole(relay, ctx)
    assert answer.headers["x-llmops-model-version"] == reported
    ((_, fields),) = limiter.writes
    assert orjson.loads(fields["event"])["model_version"] == reported
