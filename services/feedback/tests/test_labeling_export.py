"""The labeling queue filled by rules, its take/label/skip endpoints, and the dataset export."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.tests.conftest import ADMIN
from services.feedback.tests.helpers import emit, make_event, serve, wait_for

CHUNK = {"chunk_id": "c1", "document_id": "d1"}


@pytest.fixture
async def svc(make_settings: Any, redis: Redis, stream_key: str) -> AsyncIterator[Any]:
    """A running service with events that trip each rule, plus clean ones."""
    events = [
        make_event(request_id="flagged", guardrails=[{"stage": "output", "decision": "redact", "findings": ["PII"]}]),
        make_event(request_id="low-rag", endpoint="rag", retrieval=[CHUNK | {"score": 0.1}, CHUNK | {"score": 0.2}]),
        make_event(request_id="unsure", mean_logprob=-3.2),
        make_event(request_id="fine-1", guardrails=[{"stage": "input", "decision": "allow", "findings": []}]),
        make_event(request_id="fine-2", endpoint="rag", retrieval=[CHUNK | {"score": 0.9}]),
        make_event(
            request_id="pii",
            prompt=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Mail me at jo@example.com"},
            ],
            response="Sure, I will write to jo@example.com or call 555-123-4567.",
        ),
        make_event(request_id="dup-1", prompt="Say hi", response="Hi!"),
        make_event(request_id="dup-2", prompt="Say  hi", response="hi!"),
        make_event(request_id="no-prompt", prompt=None, response="redacted upstream"),
        make_event(request_id="b-1", team="team-b", key_id="key-b"),
    ]
    async with serve(create_app(make_settings())) as url:
        await emit(redis, stream_key, events)

        def client(key: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {key}"})

        async with client(ADMIN) as admin:

            async def stored() -> bool:
                return len((await admin.get("/v1/requests")).json()["data"]) == len(events)

            await wait_for(stored)
        yield client


async def test_rules_fill_the_queue_and_take_label_skip(svc: Any) -> None:
    """Guardrail flags, low retrieval, low confidence and negative feedback queue items, most urgent first."""
    async with svc("sk-team-a") as c:
        assert (await c.post("/v1/feedback", json={"request_id": "fine-1", "thumbs": "down"})).status_code == 201
        assert (await c.get("/v1/labeling/stats")).json()["counts"] == {"pending": 4}
        order = []
        for _ in range(4):
            item = (await c.get("/v1/labeling/next")).json()["item"]
            order.append((item["request_id"], item["reasons"], item["status"]))
            assert item["request"]["request_id"] == item["request_id"]
        assert order[0] == ("fine-1", ["negative_feedback"], "taken")
        assert {o[0] for o in order[1:3]} == {"flagged", "low-rag"}
        assert order[3][:2] == ("unsure", ["low_confidence"])
        assert (await c.get("/v1/labeling/next")).json()["item"] is None  # all taken (leased)
    async with svc("sk-team-b") as c:
        assert (await c.get("/v1/labeling/next")).json()["item"] is None  # team-b sees none of team-a's
        r = await c.post("/v1/labeling/items/1/label", json={"label": "good"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "item_not_found"
    async with svc("sk-team-a") as c:
        items = {rid: await _item_id(c, rid) for rid in ("fine-1", "flagged", "unsure")}
        r = await c.post(
            f"/v1/labeling/items/{items['fine-1']}/label", json={"label": "bad", "corrected_answer": "OK."}
        )
        assert r.status_code == 200 and r.json()["status"] == "labeled" and r.json()["corrected_answer"] == "OK."
        r = await c.post(f"/v1/labeling/items/{items['fine-1']}/label", json={"label": "good"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "item_closed"
        r = await c.post(f"/v1/labeling/items/{items['unsure']}/skip")
        assert r.status_code == 200 and r.json()["status"] == "skipped"
        r = await c.post(f"/v1/labeling/items/{items['flagged']}/label", json={"label": ""})
        assert r.status_code == 400
        r = await c.post(f"/v1/labeling/items/{items['flagged']}/label", json={"label": "good"})
        assert r.status_code == 200
        assert (await c.get("/v1/labeling/stats")).json()["counts"] == {"labeled": 2, "skipped": 1, "taken": 1}
        # New negative feedback reopens a skipped item.
        assert (await c.post("/v1/feedback", json={"request_id": "unsure", "rating": 1})).status_code == 201
        assert (await c.get("/v1/labeling/stats")).json()["counts"]["pending"] == 1
        item = (await c.get("/v1/labeling/next")).json()["item"]
        assert item["request_id"] == "unsure" and item["reasons"] == ["low_confidence", "negative_feedback"]


async def _item_id(c: httpx.AsyncClient, request_id: str) -> int:
    """A request's labeling item id, as GET /v1/requests/{id} shows it."""
    r = await c.get(f"/v1/requests/{request_id}")
    assert r.status_code == 200
    return int(r.json()["label_item"]["id"])


async def test_export_dataset(svc: Any, tmp_path: Path) -> None:
    """Labeled and positively rated examples become deduplicated, redacted chat JSONL with hash and row count."""
    async with svc("sk-team-a") as c:
        for rid, fb in (
            ("pii", {"thumbs": "up"}),
            ("dup-1", {"rating": 5}),
            ("dup-2", {"rating": 4}),
            ("no-prompt", {"thumbs": "up"}),
            ("fine-2", {"rating": 3}),
            ("low-rag", {"rating": 2, "corrected_answer": "The policy says 30 days."}),
        ):
            assert (await c.post("/v1/feedback", json={"request_id": rid, **fb})).status_code == 201
        flagged = await _item_id(c, "flagged")
        await c.post(f"/v1/labeling/items/{flagged}/label", json={"label": "good"})
        r = await c.post("/v1/datasets/export", json={"name": "sft-a"})
        assert r.status_code == 201, r.text
        out = r.json()
        assert not Path(out["path"]).is_absolute() and str(tmp_path) not in r.text  # row 13: no server paths
        data = (tmp_path / "exports" / out["path"]).read_bytes()
        assert out["sha256"] == hashlib.sha256(data).hexdigest()
        rows = [orjson.loads(line) for line in data.splitlines()]
        assert out["rows"] == len(rows) == 4  # flagged (label), pii, dup-1 (dup-2 deduped), low-rag (corrected)
        assert out["skipped"]["duplicate"] == 1 and out["skipped"]["no_answer_or_prompt"] == 1
        assert out["version"] == 1 and out["team"] == "team-a" and out["registered_in"] == "local"
        assert out["created_by"] == "team-a/proj-a/key-a" and out["registry_name"] == "team-a--sft-a"
        text = data.decode()
        assert "jo@example.com" not in text and "555-123-4567" not in text and "[EMAIL]" in text
        assert {
            "messages": [
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "The policy says 30 days."},
            ]
        } in rows
        pii = next(row for row in rows if row["messages"][0]["role"] == "system")
        assert [m["role"] for m in pii["messages"]] == ["system", "user", "assistant"]
        r = await c.post("/v1/datasets/export", json={"name": "sft-a", "endpoint": "rag", "include_labeled": False})
        assert r.json()["version"] == 2 and r.json()["rows"] == 1
        r = await c.post("/v1/datasets/export", json={"name": "sft-a", "team": "team-b"})
        assert r.status_code == 403
        for bad in ("../etc", "a--b"):
            r = await c.post("/v1/datasets/export", json={"name": bad})
            assert r.status_code == 400
    async with svc("sk-team-b") as c:
        r = await c.post("/v1/datasets/export", json={"name": "sft-b"})
        assert r.status_code == 201 and r.json()["rows"] == 0
        # Row 8: team B exporting under team A's name starts its own version line, registered under its own name.
        r = await c.post("/v1/datasets/export", json={"name": "sft-a"})
        assert r.status_code == 201 and r.json()["version"] == 1 and r.json()["registry_name"] == "team-b--sft-a"
        assert r.json()["created_by"] == "team-b/proj-b/key-b"
    async with svc(ADMIN) as c:
        r = await c.post("/v1/datasets/export", json={"name": "sft-a"})  # all teams: its own line too
        assert r.status_code == 201 and r.json()["version"] == 1 and r.json()["created_by"] == "admin"
