"""POST /v1/feedback and the request/feedback queries, with team isolation, on both store backends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.tests.conftest import ADMIN
from services.feedback.tests.helpers import emit, make_event, serve, wait_for


@pytest.fixture
async def api(make_settings: Any, redis: Redis, stream_key: str) -> AsyncIterator[Any]:
    """A running service with events of two teams already stored; yields a client factory and the events."""
    now = time.time()
    events = [
        make_event(request_id="a-1", ts=now - 300, model="m1"),
        make_event(request_id="a-2", ts=now - 200, model="m2"),
        make_event(request_id="a-3", ts=now - 100, model="m1", endpoint="rag"),
        make_event(request_id="b-1", ts=now - 50, team="team-b", key_id="key-b", model="m1"),
    ]
    async with serve(create_app(make_settings())) as url:
        await emit(redis, stream_key, events)

        def client(key: str | None) -> httpx.AsyncClient:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            return httpx.AsyncClient(base_url=url, headers=headers)

        async with client(ADMIN) as admin:

            async def stored() -> bool:
                return len((await admin.get("/v1/requests")).json()["data"]) == 4

            await wait_for(stored)
        yield client, now


async def test_auth_is_required_and_checked(api: Any) -> None:
    """No key, a malformed header or an unknown key: 401 in the envelope."""
    client, _ = api
    async with client(None) as c:
        r = await c.get("/v1/requests")
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    async with client("sk-nope") as c:
        r = await c.post("/v1/feedback", json={"request_id": "a-1", "thumbs": "up"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_feedback_round_trip_and_validation(api: Any) -> None:
    """Thumbs and ratings are stored with categories, comment and correction; bad bodies get a 400."""
    client, _ = api
    async with client("sk-team-a") as c:
        r = await c.post(
            "/v1/feedback",
            json={
                "request_id": "a-1",
                "rating": 2,
                "categories": ["wrong", "too-long"],
                "comment": "Not what I asked",
                "corrected_answer": "Paris.",
            },
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["team"] == "team-a" and body["key_id"] == "key-a" and body["score"] == 0.25
        assert body["categories"] == ["wrong", "too-long"]
        r = await c.post("/v1/feedback", json={"request_id": "a-2", "thumbs": "up"})
        assert r.status_code == 201 and r.json()["score"] == 1.0
        for bad in (
            {"request_id": "a-1"},
            {"request_id": "a-1", "thumbs": "up", "rating": 5},
            {"request_id": "a-1", "rating": 6},
            {"request_id": "a-1", "thumbs": "sideways"},
            {"request_id": "a-1", "thumbs": "up", "unknown": 1},
        ):
            r = await c.post("/v1/feedback", json=bad)
            assert r.status_code == 400, bad
            assert r.json()["error"]["code"] == "invalid_request"
        r = await c.post("/v1/feedback", json={"request_id": "a-1", "thumbs": "up", "comment": "x" * 300_000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        r = await c.get("/v1/requests/a-1")
        assert r.status_code == 200
        assert [f["rating"] for f in r.json()["feedback"]] == [2]
        assert r.json()["prompt"][0]["content"] == "What is the capital of France?"


async def test_team_isolation(api: Any) -> None:
    """A team key never sees, nor rates, another team's requests; the admin sees all."""
    client, _ = api
    async with client("sk-team-b") as c:
        r = await c.post("/v1/feedback", json={"request_id": "a-1", "thumbs": "down"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "request_not_found"
        assert (await c.get("/v1/requests/a-1")).status_code == 404
        ids = [x["request_id"] for x in (await c.get("/v1/requests", params={"team": "team-a"})).json()["data"]]
        assert ids == ["b-1"]
        r = await c.post("/v1/feedback", json={"request_id": "b-1", "thumbs": "up"})
        assert r.status_code == 201
    async with client("sk-team-a") as c:
        assert (await c.get("/v1/feedback")).json()["data"] == []
    async with client(ADMIN) as c:
        assert len((await c.get("/v1/feedback")).json()["data"]) == 1
        assert len((await c.get("/v1/requests", params={"team": "team-a"})).json()["data"]) == 3


async def test_queries_by_time_model_and_rating(api: Any) -> None:
    """Filters on time, model, endpoint, rating and thumbs narrow the lists."""
    client, now = api
    async with client("sk-team-a2") as c:  # another key of the same team sees the team's data
        for rid, fb in (("a-1", {"rating": 5}), ("a-2", {"rating": 1}), ("a-3", {"thumbs": "up"})):
            assert (await c.post("/v1/feedback", json={"request_id": rid, **fb})).status_code == 201

        async def ids(path: str, **params: Any) -> list[str]:
            r = await c.get(path, params=params)
            assert r.status_code == 200, r.text
            return [x["request_id"] for x in r.json()["data"]]

        assert await ids("/v1/requests") == ["a-3", "a-2", "a-1"]
        assert await ids("/v1/requests", model="m1") == ["a-3", "a-1"]
        assert await ids("/v1/requests", since=now - 250, until=now - 150) == ["a-2"]
        assert await ids("/v1/requests", endpoint="rag") == ["a-3"]
        assert await ids("/v1/requests", rating_min=4) == ["a-1"]
        assert await ids("/v1/requests", rating_max=2) == ["a-2"]
        assert await ids("/v1/requests", limit=1, offset=1) == ["a-2"]
        assert await ids("/v1/feedback", model="m1") == ["a-3", "a-1"]
        assert await ids("/v1/feedback", thumbs="up") == ["a-3"]
        assert await ids("/v1/feedback", rating_min=5) == ["a-1"]
        assert await ids("/v1/feedback", since=time.time() + 60) == []
        r = await c.get("/v1/requests", params={"limit": 0})
        assert r.status_code == 400


async def test_feedback_waits_for_an_event_still_in_the_stream(api: Any, redis: Redis, stream_key: str) -> None:
    """Feedback posted right after the response (event not yet consumed) still lands."""
    client, _ = api
    async with client("sk-team-a") as c:
        await emit(redis, stream_key, [make_event(request_id="a-late")])
        r = await c.post("/v1/feedback", json={"request_id": "a-late", "thumbs": "up"})
        assert r.status_code == 201
        r = await c.post("/v1/feedback", json={"request_id": "never-sent", "thumbs": "up"})
        assert r.status_code == 404
