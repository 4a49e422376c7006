"""A settlement that carries the request's other writes (the trace event's XADD) in its own round trip, against
real Redis: both land, a settlement is still applied once, and a script missing from Redis' cache is reloaded."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from redis.asyncio import Redis

from services.gateway.keys import KeyStore
from services.gateway.limits import Limiter


async def _reservation(store: KeyStore, limiter: Limiter, cost: int = 1000) -> Any:
    _, record = await store.create(
        team="alpha", project="p", name="t", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=10**9
    )
    return record, await limiter.admit(record, 10, cost)


async def test_settlement_and_extra_write_share_one_round_trip(
    store: KeyStore, limiter: Limiter, redis: Redis, prefix: str
) -> None:
    record, reservation = await _reservation(store, limiter)
    stream = f"{prefix}:events"
    applied = await limiter.settle(reservation, 4, 400, lambda pipe: pipe.xadd(stream, {"event": b"{}"}))
    assert applied
    assert await limiter.spend_nusd("alpha", record.key_id) == 400
    assert await redis.xlen(stream) == 1
    # A resend (a reply that was lost) applies nothing twice: the marker is gone.
    await limiter.settle(reservation, 4, 400)
    assert await limiter.spend_nusd("alpha", record.key_id) == 400


async def test_settlement_script_missing_from_redis_is_loaded_and_applied(
    store: KeyStore, limiter: Limiter, redis: Redis, prefix: str
) -> None:
    record, reservation = await _reservation(store, limiter)
    limiter._settle.sha = "0" * 40  # as after a Redis restart: EVALSHA answers NOSCRIPT (no shared SCRIPT FLUSH)
    stream = f"{prefix}:events"
    applied = await limiter.settle(reservation, 4, 250, lambda pipe: pipe.xadd(stream, {"event": b"{}"}))
    assert applied  # the event was written in the pipeline; the settlement ran on its own, once
    assert await limiter.spend_nusd("alpha", record.key_id) == 250
    assert await redis.xlen(stream) == 1


async def test_extra_write_refused_is_reported_for_the_caller_to_retry(
    store: KeyStore, limiter: Limiter, redis: Redis, prefix: str
) -> None:
    record, reservation = await _reservation(store, limiter)
    wrong_type = f"{prefix}:not-a-stream"
    await redis.set(wrong_type, "x")  # XADD onto a string: WRONGTYPE, while the settlement still applies
    applied = await limiter.settle(reservation, 4, 300, lambda pipe: pipe.xadd(wrong_type, {"event": b"{}"}))
    assert not applied
    assert await limiter.spend_nusd("alpha", record.key_id) == 300


class _Limiter:
    """Records what _finish hands it; `applied` is what the real pipeline would report."""

    def __init__(self, applied: bool) -> None:
        self.applied = applied
        self.writes: list[Any] = []

    async def settle(self, reservation: Any, tokens: int, cost: int, extra: Any = None) -> bool:
        if extra is not None:
            extra(SimpleNamespace(xadd=lambda stream, fields, **_: self.writes.append((stream, fields))))
        return self.applied


class _Emitter:
    stream, maxlen = "llmops:events", 1000

    def __init__(self) -> None:
        self.buffered: list[Any] = []

    def emit(self, event: Any) -> None:
        self.buffered.append(event)


def _proxy(limiter: _Limiter, emitter: _Emitter) -> Any:
    from prometheus_client import CollectorRegistry

    from services.gateway.metrics import GatewayMetrics
    from services.gateway.proxy import ProxyService

    metrics = GatewayMetrics(CollectorRegistry())
    return ProxyService(
        keys=None,  # type: ignore[arg-type]
        limiter=limiter,  # type: ignore[arg-type]
        routes=None,  # type: ignore[arg-type]
        upstream=None,  # type: ignore[arg-type]
        metrics=metrics,
        events=emitter,  # type: ignore[arg-type]
        default_max_tokens=16,
    )


def _call() -> Any:
    import time

    from services.gateway.call import Call
    from services.gateway.keys import KeyRecord
    from services.gateway.limits import Reservation
    from services.gateway.pricing import Price
    from services.gateway.requests import ClientRequest

    record = KeyRecord(key_id="key-a", team="team-a", project="proj-a", name="n", key_hint="sk-…a")
    req = ClientRequest(
        kind="chat",
        model="m",
        stream=False,
        wants_usage=False,
        max_tokens=16,
        payload={"messages": [{"role": "user", "content": "hi"}]},
        body_bytes=50,
    )

    class Route:
        name, price = "m", Price(input_per_1m=1.0, output_per_1m=1.0)

    return Call(record, req, Route(), Reservation("tk", "tt", "sk", "st", 10, 100, "m"), time.perf_counter())  # type: ignore[arg-type]


async def test_finished_request_writes_its_event_in_the_settlement_round_trip() -> None:
    limiter, emitter = _Limiter(applied=True), _Emitter()
    proxy = _proxy(limiter, emitter)
    await proxy._finish(_call(), 200, {"prompt_tokens": 3, "completion_tokens": 2})
    ((stream, fields),) = limiter.writes
    assert stream == "llmops:events" and b'"request_id"' in fields["event"]
    assert emitter.buffered == []  # written once, not also buffered
    assert proxy.metrics.events_emitted._value.get() == 1


async def test_event_goes_to_the_emitter_when_the_round_trip_failed() -> None:
    limiter, emitter = _Limiter(applied=False), _Emitter()
    proxy = _proxy(limiter, emitter)
    await proxy._finish(_call(), 200, {"prompt_tokens": 3, "completion_tokens": 2})
    assert len(emitter.buffered) == 1 and emitter.buffered[0].status == 200  # its buffer retries it
    assert proxy.metrics.events_emitted._value.get() == 0
