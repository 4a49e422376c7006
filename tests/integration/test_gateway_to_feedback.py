"""The request path meets the feedback world: the gateway's trace event reaches the feedback store through the
Redis stream, the caller's own key (resolved by the gateway's /v1/me) leaves feedback on it, and another
team cannot see it. Real gateway, real feedback service, real Redis; a FAKE upstream answers the chat."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.fixtures import MODEL, REDIS_URL
from tests.support.servers import uvicorn_service

pytestmark = pytest.mark.integration


def _feedback_env(gateway, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "FEEDBACK_REDIS_URL": REDIS_URL,
        "FEEDBACK_STREAM_KEY": gateway.events_stream,
        "FEEDBACK_GATEWAY_URL": gateway.url,
        "FEEDBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
        "FEEDBACK_ADMIN_TOKEN": "test-feedback-admin",
        "FEEDBACK_DRIFT_ENABLED": "false",
    }


def _stored(feedback: str, request_id: str, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    """The feedback service's record of a request, once the consumer has stored it."""
    deadline = time.monotonic() + 20
    stored = httpx.get(f"{feedback}/v1/requests/{request_id}", headers=headers)
    while stored.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = httpx.get(f"{feedback}/v1/requests/{request_id}", headers=headers)
    assert stored.status_code == 200, stored.text
    return dict(stored.json())


def test_a_low_confidence_answer_of_the_real_model_is_queued_for_labeling(
    start_gateway, inference_url: str, tmp_path: Path
) -> None:
    """SmolLM2 sampled at temperature 2 from its whole vocabulary picks tokens it finds unlikely: the inference
    service reports their mean log-probability (the route asks for it), the gateway's trace event carries it, and the
    feedback service's low-confidence rule (mean < -1.5) queues the request. A greedy answer carries its (higher)
    mean too."""
    gateway = start_gateway(
        [
            {
                "name": MODEL,
                "mean_logprob": True,
                "extra_fields": ["top_k", "min_p"],  # llama.cpp's own truncation, turned off for the wild answer
                "deployments": [{"name": "local", "url": inference_url + "/v1", "model": MODEL}],
            }
        ]
    )
    with uvicorn_service(
        "services.feedback.app:create_app", _feedback_env(gateway, tmp_path), log_path=tmp_path / "feedback.log"
    ) as feedback:
        mine = {"authorization": f"Bearer {gateway.key(team='unsure')}"}
        means = {}
        for name, sampling, stream in (
            ("wild", {"temperature": 2.0, "top_k": 0, "min_p": 0.0, "seed": 7}, True),
            ("greedy", {"temperature": 0}, False),
        ):
            chat = httpx.post(
                gateway.url + "/v1/chat/completions",
                headers=mine,
                timeout=120,
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "max_tokens": 16,
                    "stream": stream,
                    **sampling,
                },
            )
            assert chat.status_code == 200, chat.text
            assert '"logprobs":{' not in chat.text.replace(" ", "")  # per-token logprobs: only when a caller asks
            stored = _stored(feedback, chat.headers["x-request-id"], mine)
            means[name] = stored["mean_logprob"]
            if name == "wild":
                assert stored["mean_logprob"] < -1.5, stored
                assert "low_confidence" in stored["label_item"]["reasons"]
        assert means["greedy"] is not None and means["greedy"] > means["wild"]


def test_trace_event_lands_in_the_store_and_takes_feedback(
    start_gateway, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    gateway = start_gateway(
        [{"name": "fake-model", "deployments": [{"name": "fake", "url": f"http://127.0.0.1:{fake_upstream.port}/v1"}]}]
    )
    env = _feedback_env(gateway, tmp_path)
    with uvicorn_service("services.feedback.app:create_app", env, log_path=tmp_path / "feedback.log") as feedback:
        key, other = gateway.key(team="fb-team"), gateway.key(team="fb-other")
        mine = {"authorization": f"Bearer {key}"}
        chat = httpx.post(
            gateway.url + "/v1/chat/completions",
            headers=mine,
            timeout=30,
            json={"model": "fake-model", "messages": [{"role": "user", "content": "ping"}]},
        )
        assert chat.status_code == 200
        request_id = chat.headers["x-request-id"]
        body = _stored(feedback, request_id, mine)
        assert body["team"] == "fb-team" and body["model"] == "fake-model" and body["status"] == 200
        given = httpx.post(
            f"{feedback}/v1/feedback",
            headers=mine,
            json={"request_id": request_id, "rating": 2, "categories": ["wrong"], "comment": "not pong"},
        )
        assert given.status_code == 201, given.text
        hidden = httpx.get(f"{feedback}/v1/requests/{request_id}", headers={"authorization": f"Bearer {other}"})
        assert hidden.status_code == 404
        anonymous = httpx.post(f"{feedback}/v1/feedback", json={"request_id": request_id, "rating": 5})
        assert anonymous.status_code == 401
        with_feedback = httpx.get(f"{feedback}/v1/requests/{request_id}", headers=mine).json()
        assert [(f["rating"], f["comment"]) for f in with_feedback["feedback"]] == [(2, "not pong")]
        assert with_feedback["label_item"] is not None  # negative feedback queues it for labeling
