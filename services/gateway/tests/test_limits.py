"""Limits and budgets against real Redis: atomic under concurrency, exact at every boundary."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.keys import KeyStore, TeamRecord
from services.gateway.limits import Limiter, LimitExceeded

NOW = 1_800_000_010.0  # 10 s into a minute


async def _key(store: KeyStore, **limits: int | None):
    _, record = await store.create(
        team="alpha", project="p", name="t", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    for name, value in limits.items():
        setattr(record, name, value)
    return record


async def test_parallel_requests_against_rpm_admit_exactly_the_limit(store: KeyStore, limiter: Limiter) -> None:
    record = await _key(store, rpm_limit=7)
    results = await asyncio.gather(*(limiter.admit(record, 1, 0, now=NOW) for _ in range(40)), return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(admitted) == 7
    assert len(refused) == 33
    assert {r.limit for r in refused} == {"key_rpm"}
    assert refused[0].retry_after_s == 50  # until the next minute


async def test_rpm_window_resets_next_minute(store: KeyStore, limiter: Limiter) -> None:
    record = await _key(store, rpm_limit=1)
    await limiter.admit(record, 1, 0, now=NOW)
    with pytest.raises(LimitExceeded):
        await limiter.admit(record, 1, 0, now=NOW + 1)
    await limiter.admit(record, 1, 0, now=NOW + 60)


async def test_tpm_boundary_is_inclusive(store: KeyStore, limiter: Limiter) -> None:
    record = await _key(store, tpm_limit=100)
    await limiter.admit(record, 60, 0, now=NOW)
    await limiter.admit(record, 40, 0, now=NOW)  # exactly 100: admitted
    with pytest.raises(LimitExceeded) as err:
        await limiter.admit(record, 1, 0, now=NOW)
    assert (err.value.limit, err.value.used, err.value.maximum) == ("key_tpm", 100, 100)


async def test_settlement_gives_back_unused_reservation(store: KeyStore, limiter: Limiter) -> None:
    record = await _key(store, tpm_limit=100)
    reservation = await limiter.admit(record, 100, 0, now=NOW)
    with pytest.raises(LimitExceeded):
        await limiter.admit(record, 1, 0, now=NOW)
    await limiter.settle(reservation, 30, 0)  # really used 30 tokens
    await limiter.admit(record, 70, 0, now=NOW)
    with pytest.raises(LimitExceeded):
        await limiter.admit(record, 1, 0, now=NOW)


async def test_budget_boundary_and_402_kind(store: KeyStore, limiter: Limiter) -> None:
    record = await _key(store, budget_nusd=1000)
    reservation = await limiter.admit(record, 1, 1000, now=NOW)  # spend == budget is allowed
    with pytest.raises(LimitExceeded) as err:
        await limiter.admit(record, 1, 1, now=NOW)
    assert err.value.limit == "key_budget" and err.value.is_budget
    await limiter.settle(reservation, 1, 400)
    assert await limiter.spend_nusd("alpha", record.key_id) == 400
    await limiter.admit(record, 1, 600, now=NOW)
    assert await limiter.spend_nusd("alpha", record.key_id) == 1000


async def test_team_limits_are_shared_by_its_keys(store: KeyStore, limiter: Limiter) -> None:
    await store.upsert_team(TeamRecord("alpha", rpm_limit=3))
    first, second = await _key(store), await _key(store)
    results = await asyncio.gather(
        *(limiter.admit(k, 1, 0, now=NOW) for k in [first, second] * 5), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 3
    assert {r.limit for r in results if isinstance(r, LimitExceeded)} == {"team_rpm"}


async def test_concurrent_budget_never_overspends(store: KeyStore, limiter: Limiter) -> None:
    await store.upsert_team(TeamRecord("alpha", budget_nusd=10_000))
    record = await _key(store)
    results = await asyncio.gather(
        *(limiter.admit(record, 1, 333, now=NOW) for _ in range(100)), return_exceptions=True
    )
    admitted = sum(not isinstance(r, Exception) for r in results)
    assert admitted == 30  # 30 * 333 = 9990 <= 10000 < 31 * 333
    assert await limiter.spend_nusd("alpha") == 30 * 333


async def test_window_keys_expire(store: KeyStore, limiter: Limiter, redis, prefix: str) -> None:
    record = await _key(store, rpm_limit=5)
    await limiter.admit(record, 3, 0, now=NOW)
    ttls = [await redis.ttl(k) async for k in redis.scan_iter(match=f"{prefix}:*pm*")]
    assert ttls and all(0 < t <= 120 for t in ttls)
