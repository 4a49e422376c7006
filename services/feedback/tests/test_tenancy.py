"""Everything a team owns is keyed by the team (issue 12, row 8), and nothing raw is kept of a blocked or redacted
request (row 7): on both store backends, through the stream consumer and the HTTP API, and across the v1 -> v2
schema migration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.consumer import StreamConsumer
from services.feedback.events import TraceEvent
from services.feedback.metrics import FeedbackMetrics
from services.feedback.rules import LabelRules
from services.feedback.store import labeling, queries
from services.feedback.store.db import Database
from services.feedback.store.schema import SCHEMA_VERSION, current_version
from services.feedback.store.store import Store
from services.feedback.tests.conftest import ADMIN
from services.feedback.tests.helpers import emit, make_event, serve, wait_for

PII = "Mail jo@example.com or call 555-123-4567"
BLOCK = [{"stage": "input", "decision": "block", "findings": [{"detector": "pii", "action": "block"}]}]
REDACT = [{"stage": "input", "decision": "redact", "findings": []}]


async def _store(database_url: str) -> Store:
    store = Store.from_settings(database_url, sqlite_path=None)  # type: ignore[arg-type]
    await store.open()
    return store


async def test_same_request_id_from_two_teams_is_two_requests(database_url: str, redis: Redis, stream_key: str) -> None:
    """Team B sending A's x-request-id first hides nothing of A's; redeliveries still land once per team."""
    store = await _store(database_url)
    seen: list[TraceEvent] = []

    async def on_stored(events: list[TraceEvent]) -> None:
        seen.extend(events)

    consumer = StreamConsumer(
        redis,
        store,
        FeedbackMetrics(CollectorRegistry()),
        LabelRules(0.3, -1.5),
        stream_key=stream_key,
        group="feedback",
        name="c1",
        block_ms=20,
        on_stored=on_stored,
    )
    await consumer.ensure_group()
    b = make_event(request_id="same", team="team-b", key_id="key-b", response="B's answer")
    a = make_event(request_id="same", response="A's answer")
    blocked = make_event(request_id="blocked", prompt=[{"role": "user", "content": PII}], guardrails=BLOCK)
    redacted = make_event(request_id="redacted", prompt=[{"role": "user", "content": PII}], response=PII)
    redacted["guardrails"] = REDACT
    await emit(redis, stream_key, [b, a, b, a, blocked, redacted])
    await redis.xadd(stream_key, {"event": orjson.dumps(make_event(endpoint="images", guardrails=BLOCK, prompt=PII))})
    task = asyncio.create_task(consumer.run())
    try:

        async def stored() -> int:
            return len(await store.read(lambda db: db.query("SELECT 1 FROM requests"))) == 4

        await wait_for(stored)
        await wait_for(lambda: store.read(lambda db: db.query("SELECT 1 FROM dead_letters")))
        rows = await store.read(lambda db: db.query("SELECT * FROM requests ORDER BY team, request_id"))
        dead = await store.read(lambda db: db.query("SELECT raw FROM dead_letters"))
    finally:
        consumer.stop()
        await task
        await store.close()
    by_key = {(r["team"], r["request_id"]): r for r in rows}
    assert by_key[("team-a", "same")]["response"] == "A's answer"
    assert by_key[("team-b", "same")]["response"] == "B's answer"
    # Row 7: a blocked request keeps no text at all, a redacted one only redacted text; both are marked.
    block_row, redact_row = by_key[("team-a", "blocked")], by_key[("team-a", "redacted")]
    assert block_row["prompt"] is None and block_row["response"] is None and block_row["text_withheld"] == "blocked"
    assert redact_row["text_withheld"] == "redacted"
    stored_text = orjson.dumps([rows, [e.model_dump() for e in seen], dead]).decode()
    assert "jo@example.com" not in stored_text and "555-123-4567" not in stored_text  # store, sink, dead letters
    assert "[EMAIL]" in redact_row["prompt"] and "[PHONE]" in redact_row["response"]
    assert dead == [{"raw": None}]
    assert sorted((e.team, e.request_id) for e in seen) == sorted(by_key)  # each once, to the MLflow sink too


@pytest.fixture
async def api(make_settings: Any, redis: Redis, stream_key: str) -> AsyncIterator[Any]:
    """A service where team-b used team-a's request id first."""
    events = [
        make_event(request_id="same", team="team-b", key_id="key-b", response="B"),
        make_event(request_id="same", response="A"),
    ]
    async with serve(create_app(make_settings())) as url:
        await emit(redis, stream_key, events)

        def client(key: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"})

        async with client(ADMIN) as admin:
            await wait_for(lambda: _count(admin, 2))
        yield client


async def _count(c: httpx.AsyncClient, n: int) -> bool:
    return len((await c.get("/v1/requests")).json()["data"]) == n


async def test_each_team_reads_and_rates_its_own_request(api: Any) -> None:
    """A and B each get their own 'same'; feedback lands on the caller's; the admin must say which team."""
    async with api("sk-team-a") as c:
        r = await c.get("/v1/requests/same")
        assert r.status_code == 200 and r.json()["team"] == "team-a" and r.json()["response"] == "A"
        assert (await c.post("/v1/feedback", json={"request_id": "same", "rating": 1})).status_code == 201
        r = await c.get("/v1/requests/same", params={"team": "team-b"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "team_forbidden"
        r = await c.post("/v1/feedback", json={"request_id": "same", "rating": 1, "team": "team-b"})
        assert r.status_code == 403
    async with api("sk-team-b") as c:
        r = await c.get("/v1/requests/same")
        assert r.json()["response"] == "B" and r.json()["feedback"] == [] and r.json()["label_item"] is None
        assert (await c.get("/v1/feedback")).json()["data"] == []
        assert (await c.get("/v1/labeling/next")).json()["item"] is None
    async with api(ADMIN) as c:
        r = await c.get("/v1/requests/same")
        assert r.status_code == 409 and r.json()["error"]["code"] == "ambiguous_request_id"
        r = await c.get("/v1/requests/same", params={"team": "team-a"})
        assert r.status_code == 200 and [f["rating"] for f in r.json()["feedback"]] == [1]
        r = await c.post("/v1/feedback", json={"request_id": "same", "thumbs": "up", "team": "team-b"})
        assert r.status_code == 201 and r.json()["team"] == "team-b"


V1_DDL = [
    """CREATE TABLE requests (request_id TEXT PRIMARY KEY, stream_id TEXT, trace_id TEXT, ts REAL NOT NULL,
    ingested_at REAL NOT NULL, team TEXT NOT NULL, project TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL,
    model_version TEXT, deployment TEXT, prompt_version TEXT, endpoint TEXT NOT NULL, status INTEGER NOT NULL,
    error_code TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
    latency_ms REAL NOT NULL, ttft_ms REAL, stream INTEGER NOT NULL, guardrails TEXT NOT NULL,
    retrieval TEXT NOT NULL, prompt TEXT, response TEXT, mean_logprob REAL, prompt_chars INTEGER NOT NULL,
    response_chars INTEGER NOT NULL, max_retrieval_score REAL, guardrail_flagged INTEGER NOT NULL,
    refusal INTEGER NOT NULL)""",
    """CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, team TEXT NOT NULL,
    key_id TEXT, created_at REAL NOT NULL, thumbs TEXT, rating INTEGER, score REAL NOT NULL, categories TEXT NOT NULL,
    comment TEXT, corrected_answer TEXT)""",
    "CREATE INDEX feedback_request ON feedback (request_id)",
    """CREATE TABLE label_items (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE,
    team TEXT NOT NULL, created_at REAL NOT NULL, reasons TEXT NOT NULL, priority INTEGER NOT NULL,
    status TEXT NOT NULL, taken_by TEXT, lease_until REAL, label TEXT, corrected_answer TEXT, comment TEXT,
    labeled_by TEXT, labeled_at REAL)""",
    "CREATE TABLE dead_letters (stream_id TEXT PRIMARY KEY, received_at REAL NOT NULL, reason TEXT NOT NULL, raw TEXT)",
    """CREATE TABLE datasets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, version INTEGER NOT NULL,
    created_at REAL NOT NULL, team TEXT, sha256 TEXT NOT NULL, rows INTEGER NOT NULL, path TEXT NOT NULL,
    filters TEXT NOT NULL, registered_in TEXT NOT NULL, registry_ref TEXT, UNIQUE (name, version))""",
]


def _make_v1(db: Database) -> None:
    with db.transaction():
        for statement in V1_DDL:
            db.execute(statement)
        db.execute(
            "INSERT INTO requests VALUES ('old', NULL, NULL, 1.0, 1.0, 'team-a', 'p', 'k', 'm', NULL, NULL, NULL, "
            "'chat', 200, NULL, 1, 1, 0.0, 1.0, NULL, 0, '[]', '[]', '\"hi\"', 'hello', NULL, 2, 5, NULL, 0, 0)"
        )
        db.execute(
            "INSERT INTO label_items (request_id, team, created_at, reasons, priority, status) "
            "VALUES ('old', 'team-a', 1.0, '[\"negative_feedback\"]', 3, 'pending')"
        )
        db.execute(
            "INSERT INTO feedback (request_id, team, created_at, score, categories) "
            "VALUES ('old', 'team-a', 1, 0, '[]')"
        )
        db.execute(
            "INSERT INTO datasets (name, version, created_at, team, sha256, rows, path, filters, registered_in) "
            "VALUES ('sft', 1, 1.0, 'team-a', 'x', 0, '/abs/sft.jsonl', '{}', 'local')"
        )


async def test_a_version_1_store_is_migrated_keeping_its_rows(database_url: str) -> None:
    """Rows of a store written before (team, request id) keys survive, and the new keys hold afterwards."""
    old = Store.from_settings(database_url, sqlite_path=None)  # type: ignore[arg-type]
    db = old._open_db()
    try:
        _make_v1(db)
    finally:
        db.close()
    store = await _store(database_url)  # opening migrates
    try:
        assert await store.read(current_version) == SCHEMA_VERSION
        row = await store.read(queries.get_request, "old", "team-a")
        assert row["response"] == "hello" and len(row["feedback"]) == 1 and row["label_item"]["status"] == "pending"
        assert row["text_withheld"] is None

        def other_team_same_id(db: Database) -> None:
            with db.transaction():
                db.execute(
                    "INSERT INTO requests (request_id, ts, ingested_at, team, project, key_id, model, endpoint, "
                    "status, prompt_tokens, completion_tokens, cost_usd, latency_ms, stream, guardrails, retrieval, "
                    "prompt_chars, response_chars, guardrail_flagged, refusal) VALUES ('old', 2, 2, 'team-b', 'p', "
                    "'k', 'm', 'chat', 200, 0, 0, 0, 0, 0, '[]', '[]', 0, 0, 0, 0)"
                )

        await store.write(other_team_same_id)
        assert (await store.read(queries.get_request, "old", "team-b"))["feedback"] == []
        record = {"scope": "team-b", "name": "sft", "created_at": 2.0, "team": "team-b", "created_by": "b/p/k"}
        record |= {"sha256": "y", "rows": 0, "path": "team-b/sft/x.jsonl", "filters": "{}", "registered_in": "local"}
        assert (await store.write(labeling.add_dataset, record))["version"] == 1  # B's own line, not A's v2
        assert (await store.write(labeling.add_dataset, record | {"scope": "team-a", "team": "team-a"}))["version"] == 2
    finally:
        await store.close()
    again = await _store(database_url)  # a second start is a no-op
    await again.close()
