"""The official openai client through the gateway, in front of the real CPU model."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.support.fixtures import MODEL, Gateway

pytestmark = pytest.mark.integration


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return gateway.openai(key)


def test_chat_and_headers(gateway: Gateway) -> None:
    key = gateway.key()
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.strip()
    assert completion.usage.prompt_tokens > 5 and 0 < completion.usage.completion_tokens <= 12
    assert raw.headers["x-llmops-deployment"] == "local"
    assert raw.headers["x-request-id"].startswith("req_")
    expected = (completion.usage.prompt_tokens * 0.10 + completion.usage.completion_tokens * 0.20) / 1e6
    assert float(raw.headers["x-llmops-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    assert float(raw.headers["x-llmops-overhead-ms"]) >= 0


def test_stream_is_metered_from_the_usage_chunk(gateway: Gateway) -> None:
    key = gateway.key(team="streamers")
    stream = client(gateway, key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(text).strip()
    assert usage is not None and 0 < usage.completion_tokens <= 16
    expected = (usage.prompt_tokens * 0.10 + usage.completion_tokens * 0.20) / 1e6
    assert usage.model_extra["cost_usd"] == pytest.approx(expected, rel=1e-6)
    assert _settled_spend(gateway, "streamers", expected) == pytest.approx(expected, rel=1e-6)


def _settled_spend(gateway: Gateway, team: str, expected: float) -> float:
    """Spend once settlement (which runs just after the answer is sent) has landed."""
    deadline = time.monotonic() + 5
    while True:
        spend = float(gateway.admin.get(f"/admin/teams/{team}").json()["spend_usd"])
        if spend == pytest.approx(expected, rel=1e-6) or time.monotonic() > deadline:
            return spend
        time.sleep(0.05)


def test_non_streaming_spend_matches_the_cost_header(gateway: Gateway) -> None:
    gateway.team("payers")
    raw = gateway.openai(gateway.key(team="payers")).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    cost = float(raw.headers["x-llmops-cost-usd"])
    assert cost > 0 and _settled_spend(gateway, "payers", cost) == pytest.approx(cost, rel=1e-6)


def test_completions_and_models(gateway: Gateway) -> None:
    key = gateway.key()
    oc = client(gateway, key)
    out = oc.completions.create(model=MODEL, prompt="The sky is", max_tokens=5, temperature=0)
    assert out.choices[0].text and out.usage.completion_tokens <= 5
    assert [m.id for m in oc.models.list().data] == [MODEL]


def test_wrong_key_is_401_and_revoked_key_stops_working(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(gateway, "sk-llmops-wrong").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.body["code"] == "invalid_api_key"
    key = gateway.key()
    key_id = httpx.get(gateway.url + "/v1/me", headers={"authorization": f"Bearer {key}"}).json()["key_id"]
    assert gateway.admin.delete(f"/admin/keys/{key_id}").json()["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as err:
        client(gateway, key).models.list()
    assert err.value.body["code"] == "revoked_api_key"


def test_model_not_allowed_is_403(gateway: Gateway) -> None:
    key = gateway.key(allowed_models=["some-other-model"])
    with pytest.raises(openai.PermissionDeniedError) as err:
        client(gateway, key).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_allowed"


def test_unknown_model_is_404(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(gateway, gateway.key()).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert "available: " + MODEL in err.value.body["message"]


def test_over_rpm_is_429_with_retry_after(gateway: Gateway) -> None:
    # Windows are aligned minutes: start well inside one so all three calls land in the same window.
    if 60 - time.time() % 60 < 20:
        time.sleep(60 - time.time() % 60 + 0.5)
    key = gateway.key(rpm_limit=2)
    oc = client(gateway, key)
    for _ in range(2):
        oc.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(openai.RateLimitError) as err:
        oc.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert err.value.body["code"] == "key_rpm_exceeded"
    assert "2 of 2 requests" in err.value.body["message"]
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 60


def test_over_budget_is_402_naming_the_budget(gateway: Gateway) -> None:
    # 1 micro-dollar: less than the reservation of any request with max_tokens=50 (>= 50 * 0.2e-6 USD).
    key = gateway.key(budget_usd=0.000001)
    with pytest.raises(openai.APIStatusError) as err:
        client(gateway, key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=50
        )
    assert err.value.status_code == 402
    assert err.value.body["code"] == "key_budget_exceeded" and "budget of this key" in err.value.body["message"]


def test_engine_errors_pass_through_in_the_envelope(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway, gateway.key()).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 3000}], max_tokens=5
        )
    assert err.value.body["code"] == "context_length_exceeded"
    assert "2048" in err.value.body["message"]


def test_oversized_body_is_413(gateway: Gateway) -> None:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {gateway.key()}"},
        content=b'{"model":"x","messages":[{"role":"user","content":"' + b"a" * 2_000_000 + b'"}]}',
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
