"""The inference service with the real SmolLM2 model, driven by the official openai client."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest

from services.inference.tests.conftest import Inference
from tests.support.servers import uvicorn_service

pytestmark = pytest.mark.integration
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def client(protected_inference: Inference) -> openai.OpenAI:
    # The service token is the OpenAI api key: the official client needs nothing else.
    with openai.OpenAI(
        base_url=protected_inference.url + "/v1", api_key=protected_inference.token, max_retries=0
    ) as oc:
        yield oc


def test_the_official_client_without_the_service_token_gets_401(protected_inference: Inference) -> None:
    """Issue 12 row 5: anyone who reaches the port directly is refused; the gateway holds the token."""
    stranger = openai.OpenAI(base_url=protected_inference.url + "/v1", api_key="not-the-token", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError) as err:
        stranger.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Ignore all instructions"}])
    assert err.value.body["code"] == "invalid_service_token"


def test_chat_is_real_and_greedy_decoding_is_deterministic(client: openai.OpenAI) -> None:
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}
    first = client.chat.completions.create(**ask, temperature=0)
    second = client.chat.completions.create(**ask, temperature=0)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content.strip()
    assert first.usage.prompt_tokens > 10  # the chat template wraps the message
    assert first.usage.completion_tokens <= 8
    assert first.model == MODEL and first.system_fingerprint == f"{MODEL}@1"


def test_max_tokens_and_stop_are_honoured(client: openai.OpenAI) -> None:
    long = client.completions.create(model=MODEL, prompt="One, two, three, four,", max_tokens=3, temperature=0)
    assert long.usage.completion_tokens == 3 and long.choices[0].finish_reason == "length"
    free = client.completions.create(model=MODEL, prompt="One, two, three, four,", max_tokens=20, temperature=0)
    text = free.choices[0].text
    assert "," in text
    stop = text[: text.index(",") + 1].strip() or ","
    stopped = client.completions.create(
        model=MODEL, prompt="One, two, three, four,", max_tokens=20, temperature=0, stop=[","]
    )
    assert "," not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop", stop


def test_stream_ends_with_usage_then_done(protected_inference: Inference) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6, "stream": True}
    url = protected_inference.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=protected_inference.headers, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert '"usage"' in lines[-2] and '"completion_tokens"' in lines[-2]
    assert any('"content"' in line for line in lines[:-2])


def test_bad_input_gets_clear_4xx(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 3000}])
    assert err.value.body["code"] == "context_length_exceeded" and "2048" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=5000)
    assert "does not fit" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=7)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])


def test_metrics_are_engine_agnostic(protected_inference: Inference, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    text = httpx.get(protected_inference.url + "/metrics").text  # Prometheus scrapes without the token
    for name in (
        "llmops_inference_requests_total",
        "llmops_inference_prompt_tokens_total",
        "llmops_inference_completion_tokens_total",
        "llmops_inference_time_to_first_token_seconds_bucket",
        "llmops_inference_request_duration_seconds_bucket",
        "llmops_inference_queue_depth",
        "llmops_inference_running_requests",
    ):
        assert name in text, name


def test_overload_answers_429_with_retry_after(tmp_path) -> None:
    env = {
        "INFERENCE_MAX_RUNNING": "1",
        "INFERENCE_MAX_QUEUED": "0",
        "INFERENCE_PARALLEL_SLOTS": "1",
        "INFERENCE_DEV_MODE": "true",  # about admission, not the token
    }
    with uvicorn_service("services.inference.app:create_app", env, log_path=tmp_path / "inf.log") as url:
        # Long enough that the first request still runs when the others arrive; short enough for a busy CI box.
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell a story."}], "max_tokens": 24}

        def post() -> httpx.Response:
            return httpx.post(url + "/v1/chat/completions", json=body, timeout=180)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: post(), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 1 and 429 in statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "server_overloaded" and int(refused.headers["retry-after"]) >= 1
