"""Contract tests of the feedback service: any implementation must pass them.

Run against a running service (yours or a student's replacement):

    FEEDBACK_CONTRACT_URL=http://localhost:8004 \\
    FEEDBACK_CONTRACT_KEY=<a gateway key> FEEDBACK_CONTRACT_TEAM=<its team> \\
    [FEEDBACK_CONTRACT_OTHER_KEY=<a key of another team>] \\
    [FEEDBACK_CONTRACT_REDIS_URL=redis://127.0.0.1:6379/0] [FEEDBACK_CONTRACT_STREAM_KEY=llmops:events] \\
    pytest services/feedback/tests/test_contract.py

Without FEEDBACK_CONTRACT_URL the module starts this implementation itself (fake gateway, SQLite, Redis db 3).
Events are written to the stream as the gateway writes them, with unique request ids, so a live store is safe.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from services.feedback.tests.helpers import emit, fake_gateway, make_event, serve, wait_for

pytestmark = pytest.mark.integration  # needs a running feedback service and its Redis stream


@dataclass(frozen=True)
class Target:
    """The service under test and what the tests need to talk to it."""

    url: str
    redis_url: str
    stream_key: str
    key: str
    team: str
    other_key: str | None


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Target]:
    """The configured service, or this implementation started on an ephemeral port."""
    env = os.environ
    if env.get("FEEDBACK_CONTRACT_URL"):
        yield Target(
            url=env["FEEDBACK_CONTRACT_URL"].rstrip("/"),
            redis_url=env.get("FEEDBACK_CONTRACT_REDIS_URL", "redis://127.0.0.1:6379/0"),
            stream_key=env.get("FEEDBACK_CONTRACT_STREAM_KEY", "llmops:events"),
            key=env["FEEDBACK_CONTRACT_KEY"],
            team=env["FEEDBACK_CONTRACT_TEAM"],
            other_key=env.get("FEEDBACK_CONTRACT_OTHER_KEY"),
        )
        return
    from services.feedback.app import create_app
    from services.feedback.settings import FeedbackSettings

    keys = {
        "ck-1": {"key_id": "ck1", "team": "contract-a", "project": "p", "allowed_models": []},
        "ck-2": {"key_id": "ck2", "team": "contract-b", "project": "p", "allowed_models": []},
    }
    stream = f"test:feedback:contract:{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory() as tmp:
        async with serve(fake_gateway(keys)) as gw:
            settings = FeedbackSettings(
                redis_url="redis://127.0.0.1:6379/3",
                stream_key=stream,
                gateway_url=gw,
                block_ms=50,
                database_url=f"sqlite:///{Path(tmp) / 'fb.db'}",
                export_dir=str(Path(tmp) / "exports"),
                drift_enabled=False,
                log_json=False,
            )
            async with serve(create_app(settings)) as url:
                yield Target(url, "redis://127.0.0.1:6379/3", stream, "ck-1", "contract-a", "ck-2")
        redis = Redis.from_url("redis://127.0.0.1:6379/3")
        await redis.delete(stream)
        await redis.aclose()


@pytest.fixture(scope="module")
async def stored(target: Target) -> AsyncIterator[list[str]]:
    """Two events of the key's team sent through the stream (one of them twice), waited for until stored."""
    redis = Redis.from_url(target.redis_url)
    events = [make_event(request_id=f"contract-{uuid.uuid4().hex}", team=target.team, ts=time.time()) for _ in range(2)]
    await emit(redis, target.stream_key, [*events, events[0]])
    await redis.aclose()
    async with _client(target, target.key) as c:
        for ev in events:

            async def arrived(rid: str = ev["request_id"]) -> bool:
                return (await c.get(f"/v1/requests/{rid}")).status_code == 200

            await wait_for(arrived, timeout=30)
    yield [e["request_id"] for e in events]


def _client(target: Target, key: str | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=target.url, headers=headers, timeout=60)


def _assert_envelope(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert {"message", "type", "code", "request_id"} <= set(err) and isinstance(err["code"], str)


async def test_health_and_metrics(target: Target) -> None:
    """/healthz, /readyz and Prometheus /metrics with the pipeline series."""
    async with _client(target, None) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        text = (await c.get("/metrics")).text
        for series in (
            "llmops_feedback_events_total",
            "llmops_feedback_event_lag_seconds",
            "llmops_feedback_store_errors_total",
        ):
            assert series in text


async def test_events_are_stored_once(target: Target, stored: list[str]) -> None:
    """Each event sent to the stream is visible once, with the fields the gateway sent."""
    async with _client(target, target.key) as c:
        r = await c.get("/v1/requests/" + stored[0])
        body = r.json()
        assert body["request_id"] == stored[0] and body["team"] == target.team and body["status"] == 200
        listed = (await c.get("/v1/requests", params={"since": time.time() - 600, "limit": 500})).json()["data"]
        ids = [x["request_id"] for x in listed]
        assert ids.count(stored[0]) == 1 and ids.count(stored[1]) == 1


async def test_auth(target: Target, stored: list[str]) -> None:
    """No key: 401; a key of another team cannot see or rate the request (404)."""
    async with _client(target, None) as c:
        _assert_envelope(await c.get("/v1/requests"), 401)
        _assert_envelope(await c.post("/v1/feedback", json={"request_id": stored[0], "thumbs": "up"}), 401)
    if target.other_key is None:
        pytest.skip("set FEEDBACK_CONTRACT_OTHER_KEY to check team isolation")
    async with _client(target, target.other_key) as c:
        _assert_envelope(await c.get("/v1/requests/" + stored[0]), 404)
        _assert_envelope(await c.post("/v1/feedback", json={"request_id": stored[0], "thumbs": "down"}), 404)


async def test_feedback(target: Target, stored: list[str]) -> None:
    """Thumbs and ratings are accepted and queryable; invalid bodies get 400 in the envelope."""
    async with _client(target, target.key) as c:
        r = await c.post(
            "/v1/feedback",
            json={
                "request_id": stored[0],
                "rating": 1,
                "categories": ["wrong"],
                "comment": "no",
                "corrected_answer": "Paris.",
            },
        )
        assert r.status_code == 201 and r.json()["request_id"] == stored[0] and r.json()["rating"] == 1
        assert (await c.post("/v1/feedback", json={"request_id": stored[1], "thumbs": "up"})).status_code == 201
        _assert_envelope(await c.post("/v1/feedback", json={"request_id": stored[1], "rating": 9}), 400)
        _assert_envelope(await c.post("/v1/feedback", json={"request_id": stored[1]}), 400)
        _assert_envelope(await c.post("/v1/feedback", json={"request_id": "contract-missing", "thumbs": "up"}), 404)
        rated = (await c.get("/v1/requests", params={"rating_max": 1, "since": time.time() - 600})).json()["data"]
        assert stored[0] in [x["request_id"] for x in rated]
        fb = (await c.get("/v1/feedback", params={"thumbs": "up", "since": time.time() - 600})).json()["data"]
        assert stored[1] in [x["request_id"] for x in fb]


async def test_labeling_and_export(target: Target, stored: list[str]) -> None:
    """Negative feedback queues the request; next/label work; an export reports its hash and row count."""
    async with _client(target, target.key) as c:
        await c.post("/v1/feedback", json={"request_id": stored[0], "thumbs": "down"})
        item_id = None
        for _ in range(50):  # the queue may hold older items of the team on a live service
            item = (await c.get("/v1/labeling/next")).json()["item"]
            assert item is not None
            if item["request_id"] == stored[0]:
                item_id = item["id"]
                assert "negative_feedback" in item["reasons"]
                break
        assert item_id is not None
        r = await c.post(f"/v1/labeling/items/{item_id}/label", json={"label": "bad", "corrected_answer": "Paris."})
        assert r.status_code == 200 and r.json()["status"] == "labeled"
        _assert_envelope(await c.post(f"/v1/labeling/items/{item_id}/label", json={"label": "good"}), 409)
        r = await c.post("/v1/datasets/export", json={"name": "contract", "since": time.time() - 600})
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["rows"] >= 1 and len(out["sha256"]) == 64 and out["version"] >= 1
        assert not out["path"].startswith("/")  # issue 12 row 13: replies name files, never server paths


async def test_drift_endpoint(target: Target) -> None:
    """GET /v1/drift answers the signals with score, threshold and alert."""
    async with _client(target, target.key) as c:
        body = (await c.get("/v1/drift")).json()
        assert "prompt_embedding_mmd" in body["signals"]
        assert {"score", "threshold", "alert"} <= set(body["signals"]["prompt_embedding_mmd"])
