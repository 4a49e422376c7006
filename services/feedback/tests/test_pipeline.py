"""The event pipeline: exactly once in the store across stops, crashes, duplicates and bad entries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.consumer import StreamConsumer
from services.feedback.metrics import FeedbackMetrics
from services.feedback.rules import LabelRules
from services.feedback.store.store import Store
from services.feedback.tests.conftest import ADMIN
from services.feedback.tests.helpers import emit, make_event, serve, wait_for

RULES = LabelRules(low_retrieval_score=0.3, low_logprob=-1.5)


async def _store(database_url: str) -> Store:
    store = Store.from_settings(database_url, sqlite_path=None)  # type: ignore[arg-type]
    await store.open()
    return store


async def _rows(store: Store) -> list[dict[str, Any]]:
    return await store.read(lambda db: db.query("SELECT request_id, team, ts FROM requests"))


async def test_stop_send_start_every_event_exactly_once(make_settings: Any, redis: Redis, stream_key: str) -> None:
    """Traffic sent while the service is down arrives exactly once when it comes back (and duplicates do not)."""
    settings = make_settings()
    first = [make_event() for _ in range(50)]
    async with serve(create_app(settings)) as url:
        await emit(redis, stream_key, first)
        async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}) as client:

            async def stored_first() -> bool:
                r = await client.get("/v1/requests", params={"limit": 500})
                return len(r.json()["data"]) == 50

            await wait_for(stored_first)
    # The service is stopped: send traffic, including redeliveries of events already stored.
    while_down = [make_event() for _ in range(300)]
    await emit(redis, stream_key, while_down + first[:10] + while_down[:20])
    async with serve(create_app(settings)) as url:
        store = await _store(settings.database_url)
        try:

            async def all_stored() -> bool:
                return len(await _rows(store)) >= 350

            await wait_for(all_stored)
            await asyncio.sleep(0.3)  # give any would-be duplicate the chance to land
            ids = [r["request_id"] for r in await _rows(store)]
        finally:
            await store.close()
        assert sorted(ids) == sorted(e["request_id"] for e in first + while_down)
        groups = await redis.xinfo_groups(stream_key)
        assert groups[0]["pending"] == 0 and groups[0]["lag"] == 0
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{url}/metrics")).text
        assert 'llmops_feedback_events_total{outcome="duplicate"} 30.0' in metrics
        assert "llmops_feedback_event_lag_seconds_count 300.0" in metrics


async def test_crashed_consumer_entries_are_claimed(make_settings: Any, redis: Redis, stream_key: str) -> None:
    """Entries read by a consumer that died before XACK are claimed by another and stored once."""
    settings = make_settings(claim_idle_ms=200, consumer_name="survivor")
    events = [make_event() for _ in range(40)]
    await redis.xgroup_create(stream_key, "feedback", id="0", mkstream=True)
    await emit(redis, stream_key, events)
    # A consumer reads everything and "crashes" (no commit, no ack).
    taken: Any = await redis.xreadgroup("feedback", "crashed", {stream_key: ">"}, count=100)
    assert len(taken[0][1]) == 40
    async with serve(create_app(settings)):
        store = await _store(settings.database_url)
        try:
            await wait_for(lambda: _count_is(store, 40))
        finally:
            await store.close()
    pending = await redis.xpending(stream_key, "feedback")
    assert pending["pending"] == 0


async def _count_is(store: Store, n: int) -> bool:
    return len(await _rows(store)) == n


async def test_restart_with_own_pending_entries(database_url: str, redis: Redis, stream_key: str) -> None:
    """A consumer that read a batch and crashed before the commit re-reads its own pending entries at start."""
    events = [make_event() for _ in range(25)]
    await redis.xgroup_create(stream_key, "feedback", id="0", mkstream=True)
    await emit(redis, stream_key, events)
    await redis.xreadgroup("feedback", "me", {stream_key: ">"}, count=100)  # delivered, never acked
    store = await _store(database_url)
    consumer = StreamConsumer(
        redis,
        store,
        FeedbackMetrics(CollectorRegistry()),
        RULES,
        stream_key=stream_key,
        group="feedback",
        name="me",
        block_ms=20,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: _count_is(store, 25))
    finally:
        consumer.stop()
        await task
        await store.close()
    assert (await redis.xpending(stream_key, "feedback"))["pending"] == 0


class FlakyStore:
    """A store whose first commits fail, to prove entries are not acknowledged before a commit."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.failing = inner, True

    async def write(self, fn: Any, *args: Any) -> Any:
        if self.failing:
            raise OSError("disk full (simulated)")
        return await self.inner.write(fn, *args)


async def test_no_ack_before_commit(database_url: str, redis: Redis, stream_key: str) -> None:
    """While the store fails, entries stay pending; once it recovers they are stored once and acked."""
    store = await _store(database_url)
    metrics = FeedbackMetrics(CollectorRegistry())
    flaky = FlakyStore(store)
    consumer = StreamConsumer(
        redis,
        flaky,  # type: ignore[arg-type]
        metrics,
        RULES,
        stream_key=stream_key,
        group="feedback",
        name="c1",
        block_ms=20,
    )
    await consumer.ensure_group()
    await emit(redis, stream_key, [make_event() for _ in range(10)])
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: _errors_at_least(metrics, 2))
        assert (await redis.xpending(stream_key, "feedback"))["pending"] == 10  # failing: nothing acked
        assert await _count_is(store, 0)
        flaky.failing = False
        await wait_for(lambda: _count_is(store, 10))
        await wait_for(lambda: _pending_is(redis, stream_key, 0))
    finally:
        consumer.stop()
        await task
        await store.close()
    assert metrics.store_errors._value.get() >= 2


async def _errors_at_least(metrics: FeedbackMetrics, n: int) -> bool:
    return metrics.store_errors._value.get() >= n


async def _pending_is(redis: Redis, stream_key: str, n: int) -> bool:
    return (await redis.xpending(stream_key, "feedback"))["pending"] == n


async def test_invalid_entries_are_dead_lettered(database_url: str, redis: Redis, stream_key: str) -> None:
    """Entries that are not schema-1 events go to dead_letters and are acked, so they never block the stream."""
    store = await _store(database_url)
    consumer = StreamConsumer(
        redis,
        store,
        FeedbackMetrics(CollectorRegistry()),
        RULES,
        stream_key=stream_key,
        group="feedback",
        name="c1",
        block_ms=20,
    )
    await consumer.ensure_group()
    await redis.xadd(stream_key, {"event": b"{not json"})
    await redis.xadd(stream_key, {"other": b"x"})
    await redis.xadd(stream_key, {"event": orjson.dumps(make_event(endpoint="images"))})
    await emit(redis, stream_key, [make_event()])
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(lambda: _count_is(store, 1))
        await wait_for(lambda: _pending_is(redis, stream_key, 0))
        dead = await store.read(lambda db: db.query("SELECT reason FROM dead_letters"))
    finally:
        consumer.stop()
        await task
        await store.close()
    assert len(dead) == 3
    assert any("not JSON" in d["reason"] for d in dead)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_lag_under_a_second_at_modest_rate(make_settings: Any, redis: Redis, stream_key: str) -> None:
    """Events sent at ~200/s are committed with sub-second lag (the bench measures the real targets)."""
    settings = make_settings()
    async with serve(create_app(settings)) as url:
        for _ in range(10):
            await emit(redis, stream_key, [make_event(ts=time.time()) for _ in range(20)])
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=url) as client:

            async def lag_count() -> bool:
                text = (await client.get("/metrics")).text
                return "llmops_feedback_event_lag_seconds_count 200.0" in text

            await wait_for(lag_count)
            text = (await client.get("/metrics")).text
        le_1s = next(
            line for line in text.splitlines() if line.startswith('llmops_feedback_event_lag_seconds_bucket{le="1.0"}')
        )
        assert le_1s.endswith(" 200.0")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_survives_a_database_restart(make_settings: Any, redis: Redis, stream_key: str) -> None:
    """Connections killed under the service: it answers 503 (never a hang), reconnects, and loses nothing."""
    settings = make_settings()
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}) as client,
    ):

        async def stored(n: int) -> Any:
            async def check() -> bool:
                r = await client.get("/v1/requests", params={"limit": 500})
                assert r.status_code in (200, 503), r.text
                return r.status_code == 200 and len(r.json()["data"]) == n

            return check

        await emit(redis, stream_key, [make_event() for _ in range(10)])
        await wait_for(await stored(10))
        database = str(settings.database_url).split("?")[0]  # the session database, without the schema option
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        await emit(redis, stream_key, [make_event() for _ in range(10)])
        r = await client.get("/v1/requests")
        assert r.status_code in (200, 503)
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "store_unavailable"
        await wait_for(await stored(20))
    assert (await redis.xpending(stream_key, "feedback"))["pending"] == 0


async def test_dead_consumers_without_pending_entries_are_forgotten(
    database_url: str, redis: Redis, stream_key: str
) -> None:
    """Names of restarted replicas do not pile up in the group; one still holding entries is kept."""
    await redis.xgroup_create(stream_key, "feedback", id="0", mkstream=True)
    await redis.xreadgroup("feedback", "ghost", {stream_key: ">"}, count=1)  # registers an idle, empty consumer
    await emit(redis, stream_key, [make_event()])
    await redis.xreadgroup("feedback", "holder", {stream_key: ">"}, count=1)  # holds one pending entry
    store = await _store(database_url)
    consumer = StreamConsumer(
        redis,
        store,
        FeedbackMetrics(CollectorRegistry()),
        RULES,
        stream_key=stream_key,
        group="feedback",
        name="me",
        block_ms=20,
        claim_idle_ms=60_000,
        forget_idle_ms=1,
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def ghost_gone() -> bool:
            names = {c["name"] for c in await redis.xinfo_consumers(stream_key, "feedback")}
            return b"ghost" not in names and b"holder" in names

        await wait_for(ghost_gone)
    finally:
        consumer.stop()
        await task
        await store.close()
