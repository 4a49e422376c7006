"""Unit tests of the stages before the relay (services/gateway/stages), in-process with fakes: authenticate,
admit, check input, cache, route, and the pipeline ProxyService runs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from llmops_common.errors import APIError
from services.gateway.cache import CachedAnswer
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import Verdict
from services.gateway.limits import LimitExceeded
from services.gateway.routes_config import CacheFields
from services.gateway.stages import (
    Admit,
    Authenticate,
    CacheLookup,
    CheckInput,
    Completed,
    Route,
)
from services.gateway.stages.base import Background
from services.gateway.tests import stage_fakes as f
from services.gateway.upstream import NoDeploymentAvailable

# --- authenticate


class _Keys:
    def __init__(self, **records: Any) -> None:
        self.records = records

    async def lookup(self, token: str) -> Any:
        return self.records.get(token)


@pytest.mark.parametrize(
    ("header", "code", "reason"),
    [
        (None, "missing_api_key", "missing"),
        ("Bearer nope", "invalid_api_key", "unknown"),
        ("Bearer old", "revoked_api_key", "revoked"),
    ],
)
async def test_authenticate_refuses_with_401_and_counts_why(header: str | None, code: str, reason: str) -> None:
    m = f.metrics()
    stage = Authenticate(_Keys(old=f.record(status="revoked")), m)  # type: ignore[arg-type]
    with pytest.raises(APIError) as err:
        await stage.run(header)
    assert (err.value.status, err.value.code) == (401, code)
    assert f.sample(m, "llmops_gateway_auth_failures_total", reason=reason) == 1


async def test_authenticate_returns_the_active_record() -> None:
    stage = Authenticate(_Keys(good=f.record()), f.metrics())  # type: ignore[arg-type]
    assert (await stage.run("Bearer good")).key_id == "key-a"


# --- admit


def _admit(limiter: f.Limiter, m: Any = None, **kw: Any) -> Admit:
    return Admit(
        routes=f.routes(),
        limiter=limiter,  # type: ignore[arg-type]
        metrics=m or f.metrics(),
        default_max_tokens=16,
        max_output_tokens=1000,
        max_messages=10,
        **kw,
    )


def _body(**fields: Any) -> bytes:
    return orjson.dumps({"model": f.MODEL, "messages": [{"role": "user", "content": "hi"}], **fields})


async def test_admit_reserves_the_upper_bounds_and_makes_the_context() -> None:
    limiter = f.Limiter()
    raw = _body(max_tokens=8)
    ctx = await _admit(limiter).run(f.record(), "chat", raw, 1.0)
    assert ctx.route.name == f.MODEL and ctx.req.max_tokens == 8 and ctx.started == 1.0
    ((key_id, tokens, cost),) = limiter.admitted
    assert key_id == "key-a" and tokens == -(-len(raw) // 4) + 8
    assert cost == ctx.route.price.cost_nano(len(raw), 8) and ctx.reservation.tokens == tokens


@pytest.mark.parametrize(
    ("rec", "body", "status", "code", "model"),
    [
        (f.record(), _body(model="other"), 404, "model_not_found", "unknown"),
        (f.record(allowed_models=["x"]), _body(), 403, "model_not_allowed", "unknown"),
        (f.record(), _body(bogus=1), 400, "unknown_field", f.MODEL),
    ],
)
async def test_admit_refuses_before_reserving_and_counts_the_refusal(
    rec: Any, body: bytes, status: int, code: str, model: str
) -> None:
    limiter, m = f.Limiter(), f.metrics()
    with pytest.raises(APIError) as err:
        await _admit(limiter, m).run(rec, "chat", body, 0.0)
    assert (err.value.status, err.value.code) == (status, code) and limiter.admitted == []
    assert f.sample(m, "llmops_gateway_requests_total", team="team-a", model=model, status=str(status)) == 1


@pytest.mark.parametrize(("limit", "status"), [("key_rpm", 429), ("team_budget", 402)])
async def test_admit_turns_a_limit_into_its_refusal(limit: str, status: int) -> None:
    m = f.metrics()
    limiter = f.Limiter(refuse=LimitExceeded(limit, 1, 1, 1, 1))
    with pytest.raises(APIError) as err:
        await _admit(limiter, m).run(f.record(), "chat", _body(), 0.0)
    assert err.value.status == status
    assert f.sample(m, "llmops_gateway_requests_total", team="team-a", model=f.MODEL, status=str(status)) == 1


async def test_admit_starts_the_prefetch_and_cancels_it_when_refused() -> None:
    started: list[Any] = []

    def prefetch(rec: Any, req: Any, route: Any) -> Any:
        task = asyncio.get_running_loop().create_future()
        started.append(task)
        return type("P", (), {"key": "k", "task": task})()

    with pytest.raises(APIError):
        await _admit(f.Limiter(refuse=LimitExceeded("key_tpm", 1, 1, 1, 1)), prefetch=prefetch).run(
            f.record(), "chat", _body(), 0.0
        )
    assert started[0].cancelled()
    ctx = await _admit(f.Limiter(), prefetch=prefetch).run(f.record(), "chat", _body(), 0.0)
    assert ctx.prefetch is not None and ctx.prefetch.task is started[1]


# --- check input


async def test_check_input_writes_redactions_back_and_records_the_verdict() -> None:
    ctx = f.context()
    await CheckInput(GuardrailChecks(f.Guard(redact="[PII]"), 512)).pre(ctx)  # type: ignore[arg-type]
    assert ctx.req.payload["messages"][0]["content"] == "[PII]" and ctx.input_redacted
    assert [(v.stage, v.decision) for v in ctx.verdicts] == [("input", "redact")]


@pytest.mark.parametrize(
    ("code", "decision"), [("guardrail_blocked", "block"), ("guardrails_unavailable", "unavailable")]
)
async def test_check_input_refusal_withholds_the_prompt(code: str, decision: str) -> None:
    ctx = f.context()
    guard = f.Guard(error=APIError(400 if decision == "block" else 503, code, "no"))
    with pytest.raises(APIError):
        await CheckInput(GuardrailChecks(guard, 512)).pre(ctx)  # type: ignore[arg-type]
    assert ctx.input_withheld and [(v.stage, v.decision) for v in ctx.verdicts] == [("input", decision)]


# --- cache


class _Cache:
    """A ResponseCache with one stored entry (or none)."""

    def __init__(self, entry: CachedAnswer | None = None) -> None:
        self.entry = entry
        self.fetched: list[str] = []
        self.stored: list[tuple[Any, ...]] = []

    def key(self, team: str, kind: str, payload: dict[str, Any], version: str) -> str:
        return f"{team}:{payload['messages'][0]['content']}:{version}"

    async def fetch(self, key: str) -> Any:
        self.fetched.append(key)
        return self.entry

    def answer(self, fetched: Any, model: str) -> CachedAnswer | None:
        return fetched

    def semantic_probe(self, *args: Any) -> None:
        return None

    async def put_and_index(self, *args: Any) -> None:
        self.stored.append(args)


_ON = CacheFields(enabled=True, hit_cost_fraction=0.5)
_HIT = CachedAnswer(
    b'{"x":1}',
    {"choices": [{"message": {"content": "hello"}}], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
    {"decision": "allow", "findings": []},
    "d1",
    0.0,
)


def _lookup(cache: _Cache, finish: f.Finish, background: Background, checked: bool = True) -> CacheLookup:
    return CacheLookup(cache, f.metrics(), lambda model: None, finish, background, checked)  # type: ignore[arg-type]


async def test_cache_hit_answers_charges_the_fraction_and_settles_once() -> None:
    finish, background = f.Finish(), Background()
    stage = _lookup(_Cache(_HIT), finish, background)
    ctx = f.context(f.request(temperature=0), f.route(_ON))
    ctx.prefetch = stage.prefetch(ctx.record, ctx.req, ctx.route)
    answer = await stage.pre(ctx)
    await background.drain()
    assert isinstance(answer, Completed) and answer.body == b'{"x":1}'
    assert answer.headers["x-llmops-cache"] == "hit" and answer.headers["x-llmops-cache-match"] == "exact"
    assert ctx.cached_cost == round(ctx.route.price.cost_nano(4, 2) * 0.5) and finish.calls == [(200, None, None)]
    assert ctx.response_text == ["hello"] and ctx.verdicts[-1].stage == "output"


async def test_cache_miss_reads_the_redacted_key_and_stores_a_checked_answer() -> None:
    cache, background = _Cache(), Background()
    stage = _lookup(cache, f.Finish(), background)
    ctx = f.context(f.request(temperature=0), f.route(_ON))
    ctx.prefetch = stage.prefetch(ctx.record, ctx.req, ctx.route)
    ctx.req.payload["messages"][0]["content"] = "[REDACTED]"  # the input check changed the body
    assert await stage.pre(ctx) is None
    assert cache.fetched[-1].startswith("team-a:[REDACTED]") and ctx.cache_key == cache.fetched[-1]
    ctx.verdicts.append(Verdict("output", "allow"))
    ctx.response_text.append("hi")
    stage.post(ctx, Completed(200, b"{}", {}))
    await background.drain()
    assert len(cache.stored) == 1


async def test_cache_never_stores_an_unvouched_answer_or_a_refusal() -> None:
    cache, background = _Cache(), Background()
    stage = _lookup(cache, f.Finish(), background)
    ctx = f.context(f.request(temperature=0), f.route(_ON))
    assert await stage.pre(ctx) is None
    ctx.response_text.append("hi")  # no output verdict: the check did not vouch for it
    stage.post(ctx, Completed(200, b"{}", {}))
    stage.post(ctx, Completed(502, b"{}", {}))
    await background.drain()
    assert cache.stored == []


@pytest.mark.parametrize(("answered", "stored"), [("7", 1), ("8", 0), (None, 1)])
async def test_cache_stores_only_the_production_versions_answer(answered: str | None, stored: int) -> None:
    """Under a canary the challenger's deployment (x-model-version 8) answers some requests; the key names the
    registry's production version (7), so only production's answers (or a deployment that names none) are stored."""
    cache, background = _Cache(), Background()
    stage = CacheLookup(cache, f.metrics(), lambda model: "7", f.Finish(), background, True)  # type: ignore[arg-type]
    headers = {"x-model-version": answered} if answered is not None else {}
    ctx = f.context(f.request(temperature=0), f.route(_ON), up=f.upstream(f.Response(body=b"{}", headers=headers)))
    assert await stage.pre(ctx) is None
    ctx.verdicts.append(Verdict("output", "allow"))
    ctx.response_text.append("hi")
    stage.post(ctx, Completed(200, b"{}", {}))
    await background.drain()
    assert len(cache.stored) == stored


async def test_cache_leaves_a_sampled_request_alone() -> None:
    stage = _lookup(_Cache(_HIT), f.Finish(), Background())
    ctx = f.context(f.request(temperature=0.7), f.route(_ON))
    assert stage.prefetch(ctx.record, ctx.req, ctx.route) is None
    assert await stage.pre(ctx) is None and ctx.cache_policy is None


# --- route


class _Upstream:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.bodies: dict[str, bytes] = {}

    async def open(self, route: Any, path: str, bodies: dict[str, bytes], stream: bool) -> Any:
        self.bodies = bodies
        if self.error is not None:
            raise self.error
        return f.upstream(f.Response())


async def test_route_sends_each_deployment_its_own_model_and_the_usage_option() -> None:
    up = _Upstream()
    ctx = f.context(f.request(stream=True))
    await Route(up).pre(ctx)  # type: ignore[arg-type]
    assert ctx.up is not None
    sent = {name: orjson.loads(body) for name, body in up.bodies.items()}
    assert sent["d1"]["model"] == "up-m" and sent["d2"]["model"] == "up-m2"
    assert sent["d1"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry_after"),
    [
        # At capacity: the deployments' own Retry-After hint (the soonest), rounded up.
        (NoDeploymentAvailable(f.MODEL, ["d1: status_429"], False, 1.4), 429, "upstream_overloaded", "2"),
        (NoDeploymentAvailable(f.MODEL, ["d1: status_429"], False), 429, "upstream_overloaded", "1"),
        (NoDeploymentAvailable(f.MODEL, ["d1: circuit open"], True, 2.2), 503, "no_deployment_available", "3"),
        (NoDeploymentAvailable(f.MODEL, ["d1: status_500"], False), 502, "no_deployment_available", None),
    ],
)
async def test_route_maps_no_deployment_to_its_refusal(
    exc: Exception, status: int, code: str, retry_after: str | None
) -> None:
    with pytest.raises(APIError) as err:
        await Route(_Upstream(exc)).pre(f.context())  # type: ignore[arg-type]
    assert (err.value.status, err.value.code) == (status, code)
    assert (err.value.headers or {}).get("retry-after") == retry_after


# --- the pipeline


class _Stage:
    def __init__(self, name: str, log: list[str], answer: Any = None, error: Exception | None = None) -> None:
        self.name, self.log, self.answer, self.error = name, log, answer, error

    async def pre(self, ctx: Any) -> Any:
        self.log.append(f"pre:{self.name}")
        if self.error is not None:
            raise self.error
        return self.answer

    def post(self, ctx: Any, answer: Any) -> None:
        self.log.append(f"post:{self.name}")


def _proxy(limiter: f.Limiter, emitter: f.Emitter | None = None) -> Any:
    from services.gateway.proxy import ProxyService

    return ProxyService(
        keys=None,  # type: ignore[arg-type]
        limiter=limiter,  # type: ignore[arg-type]
        routes=f.routes(),
        upstream=None,  # type: ignore[arg-type]
        metrics=f.metrics(),
        events=emitter,  # type: ignore[arg-type]
        default_max_tokens=16,
    )


async def test_pipeline_runs_pre_in_order_until_an_answer_then_post_in_reverse() -> None:
    proxy, log = _proxy(f.Limiter()), list[str]()
    done = Completed(200, b"{}", {})
    proxy.pipeline = (_Stage("a", log), _Stage("b", log, answer=done), _Stage("c", log))
    assert await proxy.run(f.context()) is done
    assert log == ["pre:a", "pre:b", "post:b", "post:a"]


async def test_forward_settles_a_failure_after_admission_exactly_once() -> None:
    limiter, emitter = f.Limiter(), f.Emitter()
    proxy = _proxy(limiter, emitter)
    proxy.pipeline = (_Stage("boom", [], error=RuntimeError("a bug")),)
    with pytest.raises(RuntimeError):
        await proxy.forward(f.record(), "chat", _body(), 0.0)
    assert len(limiter.settled) == 1 and limiter.settled[0] == (0, 0)
    ((_, fields),) = limiter.writes
    event = orjson.loads(fields["event"])
    assert event["status"] == 500 and event["error_code"] == "internal_error"


def test_the_pipeline_leaves_out_what_is_not_configured() -> None:
    proxy = _proxy(f.Limiter())
    assert [s.name for s in proxy.pipeline] == ["route", "relay"]
    assert not any(proxy._posts)  # neither has a `post`: nothing is called on the way out
