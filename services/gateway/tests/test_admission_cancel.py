"""An admission whose reply never came (Redis hung, connection broken) is cancelled: refunded if the script ran,
a no-op if it runs later; a settlement that could not reach Redis is retried, and applies once. Regression tests
of the leaks the Redis fault tests found (tests/reliability/test_redis_faults.py)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.gateway.keys import KeyStore
from services.gateway.limits import Limiter, Reservation

NOW = 1_800_000_010.0


async def _record(store: KeyStore):
    _, record = await store.create(
        team="alpha", project="p", name="t", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    return record


async def _cancel(limiter: Limiter, reservation: Reservation) -> None:
    limiter._cancel_later(reservation)
    await asyncio.gather(*limiter._pending)


async def test_cancel_after_the_admission_ran_refunds_it(store: KeyStore, limiter: Limiter, redis: Redis) -> None:
    record = await _record(store)
    reservation = await limiter.admit(record, 100, 5000, now=NOW)
    assert await limiter.spend_nusd("alpha") == 5000
    await _cancel(limiter, reservation)
    assert await limiter.spend_nusd("alpha") == 0
    assert int(await redis.get(reservation.tpm_key) or 0) == 0
    await _cancel(limiter, reservation)  # idempotent: a second cancel refunds nothing more
    assert await limiter.spend_nusd("alpha") == 0


async def test_an_admission_arriving_after_its_cancel_reserves_nothing(
    store: KeyStore, limiter: Limiter, redis: Redis, monkeypatch
) -> None:
    record = await _record(store)
    keys = limiter._keys(record, int(NOW // 60))
    monkeypatch.setattr(limiter, "_keys", lambda _record, _minute: keys)
    cancelled = Reservation(keys[1], keys[3], keys[4], keys[5], 100, 5000, keys[7])
    await _cancel(limiter, cancelled)  # the cancel lands first (it was sent on another connection)
    assert await limiter.spend_nusd("alpha") == 0
    await limiter._admit(keys=keys, args=[-1, -1, -1, 100, 5000, 120, 1, 600])  # the stale admission wakes up
    assert await limiter.spend_nusd("alpha") == 0


async def test_settlement_removes_the_marker(store: KeyStore, limiter: Limiter, redis: Redis) -> None:
    record = await _record(store)
    reservation = await limiter.admit(record, 100, 5000, now=NOW)
    assert await redis.get(reservation.marker) == "r"
    await limiter.settle(reservation, 10, 700)
    assert await redis.exists(reservation.marker) == 0
    assert await limiter.spend_nusd("alpha") == 700


async def test_a_timed_out_admission_schedules_its_cancel(store: KeyStore, limiter: Limiter, monkeypatch) -> None:
    record = await _record(store)
    real_admit = limiter._admit

    async def sent_then_timed_out(**kwargs):
        await real_admit(**kwargs)  # Redis ran it, but the reply was lost
        raise RedisTimeoutError("Timeout reading from socket")

    monkeypatch.setattr(limiter, "_admit", sent_then_timed_out)
    try:
        await limiter.admit(record, 100, 5000, now=NOW)
    except RedisTimeoutError:
        pass
    else:
        raise AssertionError("the timeout must reach the caller (503)")
    await asyncio.gather(*limiter._pending)
    assert await limiter.spend_nusd("alpha") == 0


async def test_settlement_is_idempotent(store: KeyStore, limiter: Limiter) -> None:
    record = await _record(store)
    reservation = await limiter.admit(record, 100, 5000, now=NOW)
    await limiter.settle(reservation, 10, 700)
    await limiter.settle(reservation, 10, 700)  # a resend of a settlement whose reply was lost
    assert await limiter.spend_nusd("alpha") == 700


async def test_a_settlement_that_cannot_reach_redis_is_retried(store: KeyStore, limiter: Limiter, monkeypatch) -> None:
    record = await _record(store)
    reservation = await limiter.admit(record, 100, 5000, now=NOW)
    real_settle, failures = limiter._settle, [RedisConnectionError("Connection refused")] * 2

    async def refused_twice(**kwargs):
        if failures:
            raise failures.pop()
        return await real_settle(**kwargs)

    monkeypatch.setattr(limiter, "_settle", refused_twice)
    monkeypatch.setattr("services.gateway.limits.RETRY_S", 0.01)
    await limiter.settle(reservation, 10, 700)  # does not raise: the answer was served, charging is deferred
    await asyncio.gather(*limiter._pending)
    assert await limiter.spend_nusd("alpha") == 700


async def test_a_resent_admission_reserves_once(store: KeyStore, limiter: Limiter, monkeypatch) -> None:
    """The Redis client resends a command once when its connection broke: the same admission must not reserve
    twice (the marker makes the script idempotent)."""
    record = await _record(store)
    keys = limiter._keys(record, int(NOW // 60))
    monkeypatch.setattr(limiter, "_keys", lambda _record, _minute: keys)
    await limiter.admit(record, 100, 5000, now=NOW)
    await limiter.admit(record, 100, 5000, now=NOW)  # the resend
    assert await limiter.spend_nusd("alpha") == 5000
