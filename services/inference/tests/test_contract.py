"""Contract of the inference service: what any replacement must do so the gateway can route to it.

Run against any server: `make contract SERVICE=inference URL=http://localhost:9001 SERVICE_TOKEN=<token>` (it must
serve INFERENCE_CONTRACT_MODEL, default smollm2-135m-instruct). The token (INFERENCE_CONTRACT_TOKEN) is the one the
server accepts from the gateway (its INFERENCE_SERVICE_TOKEN), sent as `Authorization: Bearer` exactly as the OpenAI
clients send their api_key; without one, the server must be in dev mode and the token test is skipped.
Without a URL it runs against this service, started with a token.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration
MODEL = os.environ.get("INFERENCE_CONTRACT_MODEL", "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(base URL, service token) of the server under test."""
    if os.environ.get("INFERENCE_CONTRACT_URL"):
        return os.environ["INFERENCE_CONTRACT_URL"].rstrip("/"), os.environ.get("INFERENCE_CONTRACT_TOKEN", "")
    local = request.getfixturevalue("protected_inference")
    return local.url, local.token


@pytest.fixture(scope="module")
def http(target: tuple[str, str]) -> Iterator[httpx.Client]:
    base, token = target
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        yield client


def _chat(**extra: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 5, **extra}


def test_health_readiness_and_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 200
    assert "# TYPE" in http.get("/metrics").text


def test_v1_refuses_callers_without_the_service_token(target: tuple[str, str]) -> None:
    """Only the gateway reaches inference: no token or a wrong one gets 401 in the envelope; probes stay open."""
    base, token = target
    if not token:
        pytest.skip("no INFERENCE_CONTRACT_TOKEN: the server under test runs in dev mode (open to anyone)")
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        for headers in ({}, {"authorization": "Bearer not-the-token"}):
            response = anonymous.post("/v1/chat/completions", json=_chat(), headers=headers)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] and response.json()["error"]["message"]
            assert anonymous.get("/v1/models", headers=headers).status_code == 401
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200


def test_models_lists_the_served_model(http: httpx.Client) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list" and MODEL in [m["id"] for m in body["data"]]


def test_chat_completion_shape(http: httpx.Client) -> None:
    body = http.post("/v1/chat/completions", json=_chat()).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_ends_with_a_usage_chunk_then_done(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/chat/completions", json=_chat(stream=True)) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        frames = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    assert frames[-1] == "[DONE]"
    last = orjson.loads(frames[-2])
    assert last["usage"]["completion_tokens"] > 0  # the gateway meters streams from this chunk
    assert all(orjson.loads(f)["object"] == "chat.completion.chunk" for f in frames[:-1])


def test_text_completion_shape(http: httpx.Client) -> None:
    body = http.post("/v1/completions", json={"model": MODEL, "prompt": "The sky is", "max_tokens": 3}).json()
    assert body["object"] == "text_completion" and isinstance(body["choices"][0]["text"], str)


@pytest.mark.parametrize(
    ("payload", "status"),
    [({"model": MODEL, "messages": []}, 400), ({"model": MODEL}, 400), (_chat(model="no-such-model"), 404)],
)
def test_errors_use_the_envelope(http: httpx.Client, payload: dict, status: int) -> None:
    response = http.post("/v1/chat/completions", json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["code"] and error["type"]
