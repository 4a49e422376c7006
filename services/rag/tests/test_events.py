"""RAG's own trace events reach the shared Redis stream: one per answer request, with what was retrieved."""

from __future__ import annotations

import secrets
import time
import uuid

import orjson
import pytest
import redis

from services.rag.app import create_app
from services.rag.tests.conftest import client_for, rag_settings
from services.rag.tests.fake_gateway import serve_in_thread

pytestmark = pytest.mark.integration  # needs the real Redis stream

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_answers_emit_trace_events_with_retrieval(tmp_path, embedder, fake_gateway) -> None:
    stream = f"test:rag-events:{secrets.token_hex(3)}"
    settings = rag_settings(tmp_path, fake_gateway[0], events_redis_url=REDIS_URL, events_stream=stream)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with serve_in_thread(create_app(settings, embedder=embedder)) as url, client_for(url, "key-team-a") as http:
            name = f"c-{uuid.uuid4().hex[:8]}"
            assert http.post("/v1/collections", json={"name": name}).status_code == 201
            docs = [{"id": "cats", "title": "Cats", "text": "# Cats\n\nCats eat fish and mice and purr a lot."}]
            assert http.post(f"/v1/collections/{name}/documents", json={"documents": docs, "wait": True}).is_success
            answered = http.post(f"/v1/collections/{name}/answer", json={"question": "What do cats eat?"})
            assert answered.status_code == 200
            streamed = http.post(f"/v1/collections/{name}/answer", json={"question": "Do cats purr?", "stream": True})
            assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
            deadline = time.monotonic() + 5
            events: list[dict] = []
            while len(events) < 2 and time.monotonic() < deadline:
                events = [orjson.loads(f[b"event"]) for _, f in client.xrange(stream)]
                time.sleep(0.05)
        assert len(events) == 2
        event, streamed_event = events
        assert streamed_event["stream"] is True and streamed_event["prompt"] == "Do cats purr?"
        assert streamed_event["retrieval"] and streamed_event["response"]
        assert event["endpoint"] == "rag" and event["status"] == 200 and event["team"] == "team-a"
        assert event["request_id"] == answered.headers["x-request-id"]
        assert event["prompt_version"] == "rag-answer@2" and event["prompt"] == "What do cats eat?"
        assert event["retrieval"] and event["retrieval"][0]["document_id"] == "cats"
        assert {"chunk_id", "score"} <= set(event["retrieval"][0])
    finally:
        client.delete(stream)
        client.close()
