"""The feedback pipeline with its Redis stream down (stopped) or hung (SIGSTOP) for seconds under a burst of
trace events: the real producer (llmops_common.trace_events.EventEmitter, as in the gateway and RAG) writes to a
private redis-server, the real feedback service consumes it into SQLite. After recovery: 0 events lost, each
stored exactly once by (team, request id), nothing left pending, no restart of either side.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from llmops_common.trace_events import EventEmitter
from llmops_common.trace_schema import TraceEvent
from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from services.feedback.store.store import Store
from services.feedback.tests.helpers import fake_gateway, make_event, serve, wait_for
from tests.support.fault_redis import fault_redis

pytestmark = pytest.mark.integration

RATE = 200  # events per second
BURST_S = 6.0
FAULT_AT_S, FAULT_FOR_S = 1.5, 3.0


async def _rows(store: Store) -> list[dict[str, Any]]:
    return await store.read(lambda db: db.query("SELECT team, request_id FROM requests"))


@pytest.mark.parametrize("fault", ["down", "hung"])
async def test_no_event_lost_or_doubled_across_a_redis_outage(tmp_path: Path, fault: str) -> None:
    with fault_redis() as redis_server:
        settings = FeedbackSettings(
            redis_url=redis_server.url,
            stream_key="test:rel:feedback",
            database_url=f"sqlite:///{tmp_path / 'feedback.db'}",
            admin_token="admin",
            consumer_name="rel-consumer",
            block_ms=50,
            drift_enabled=False,
            export_dir=str(tmp_path / "exports"),
            log_json=False,
        )
        registry = CollectorRegistry()
        dropped = Counter("dropped", "events dropped", registry=registry)
        producer_redis = Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
        emitter = EventEmitter(producer_redis, settings.stream_key, dropped=dropped)
        await emitter.start()
        events = [
            TraceEvent.model_validate(make_event(team=team, key_id=f"key-{team}", project=f"proj-{team}"))
            for i in range(int(RATE * BURST_S))
            for team in ["team-a" if i % 2 else "team-b"]
        ]
        async with serve(fake_gateway({})) as gateway_url:
            settings.gateway_url = gateway_url
            async with serve(create_app(settings)):
                started = time.monotonic()
                faulted = restored = False
                for i, event in enumerate(events):  # a steady burst, paced
                    elapsed = time.monotonic() - started
                    if not faulted and elapsed >= FAULT_AT_S:
                        await asyncio.to_thread(redis_server.stop if fault == "down" else redis_server.freeze)
                        faulted = True
                    if faulted and not restored and elapsed >= FAULT_AT_S + FAULT_FOR_S:
                        await asyncio.to_thread(redis_server.start if fault == "down" else redis_server.thaw)
                        restored = True
                    emitter.emit(event)
                    await asyncio.sleep(max(0.0, (i + 1) / RATE - (time.monotonic() - started)))
                assert restored
                emitter.emit(events[0])  # a redelivery of an event already sent: stored once all the same
                emitter.emit(events[-1])
                store = Store.from_settings(settings.database_url, sqlite_path=None)  # type: ignore[arg-type]
                await store.open()
                try:

                    async def all_stored() -> bool:
                        return len(await _rows(store)) >= len(events)

                    await wait_for(all_stored, timeout=30)
                    await asyncio.sleep(0.5)  # give a would-be duplicate the chance to land
                    rows = await _rows(store)
                finally:
                    await store.close()
                check = Redis.from_url(redis_server.url)
                try:
                    groups = await check.xinfo_groups(settings.stream_key)
                finally:
                    await check.aclose()
        await emitter.stop()
        await producer_redis.aclose()
    stored = sorted((r["team"], r["request_id"]) for r in rows)
    assert stored == sorted((e.team, e.request_id) for e in events)  # 0 lost, exactly once
    assert dropped._value.get() == 0  # the producer buffered through the outage instead of dropping
    assert groups[0]["pending"] == 0
