"""Contract of the gateway: what any replacement must do for clients, rag and feedback to keep working.

Run against any server: `make contract SERVICE=gateway URL=http://localhost:9000` with GATEWAY_CONTRACT_KEY
(a team key allowed to use GATEWAY_CONTRACT_MODEL, default smollm2-135m-instruct) and, for the admin part,
GATEWAY_CONTRACT_ADMIN_TOKEN, and GATEWAY_CONTRACT_METRICS_TOKEN where its /metrics demands one. Without a URL
it runs against this gateway in front of the real model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration
MODEL = os.environ.get("GATEWAY_CONTRACT_MODEL", "smollm2-135m-instruct")


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> tuple[str, str, str | None]:
    """(base URL, team key, admin token)."""
    if os.environ.get("GATEWAY_CONTRACT_URL"):
        return (
            os.environ["GATEWAY_CONTRACT_URL"].rstrip("/"),
            os.environ["GATEWAY_CONTRACT_KEY"],
            os.environ.get("GATEWAY_CONTRACT_ADMIN_TOKEN") or None,
        )
    gateway = request.getfixturevalue("gateway")
    from tests.support.fixtures import ADMIN

    return gateway.url, gateway.key(team="contract"), ADMIN


@pytest.fixture(scope="module")
def http(target: tuple[str, str, str | None]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target[0], timeout=120, headers={"authorization": f"Bearer {target[1]}"}) as client:
        yield client


def _chat(**extra: object) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 5, **extra}


def test_health_and_metrics(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
    # A gateway with GATEWAY_METRICS_TOKEN set (compose and Helm always set one) answers /metrics to that token only.
    token = os.environ.get("GATEWAY_CONTRACT_METRICS_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    assert "# TYPE" in http.get("/metrics", headers=headers).text


def test_missing_or_wrong_key_is_401_in_the_envelope(target: tuple[str, str, str | None]) -> None:
    for headers in ({}, {"authorization": "Bearer sk-not-a-key"}):
        response = httpx.post(target[0] + "/v1/chat/completions", json=_chat(), headers=headers, timeout=30)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] and error["message"] and error["type"] == "authentication_error"


def test_me_names_the_team(http: httpx.Client) -> None:
    me = http.get("/v1/me").json()
    assert {"key_id", "team", "project", "allowed_models"} <= set(me)


def test_models_and_chat(http: httpx.Client) -> None:
    assert MODEL in [m["id"] for m in http.get("/v1/models").json()["data"]]
    response = http.post("/v1/chat/completions", json=_chat())
    assert response.status_code == 200 and response.headers.get("x-request-id")
    body = response.json()
    assert body["choices"][0]["message"]["role"] == "assistant" and body["usage"]["completion_tokens"] > 0


def test_stream_with_usage(http: httpx.Client) -> None:
    with http.stream(
        "POST", "/v1/chat/completions", json=_chat(stream=True, stream_options={"include_usage": True})
    ) as r:
        frames = [line[5:].strip() for line in r.iter_lines() if line.startswith("data:")]
    assert r.status_code == 200 and frames[-1] == "[DONE]"
    assert orjson.loads(frames[-2])["usage"]["completion_tokens"] > 0


def test_unknown_model_is_404(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=_chat(model="no-such-model"))
    assert response.status_code == 404 and response.json()["error"]["code"]


def test_admin_creates_a_key_shown_once(target: tuple[str, str, str | None]) -> None:
    base, _, admin = target
    if admin is None:
        pytest.skip("GATEWAY_CONTRACT_ADMIN_TOKEN not given")
    headers = {"authorization": f"Bearer {admin}"}
    assert httpx.post(base + "/admin/teams", json={"team": "contract-admin"}, headers=headers).status_code == 200
    created = httpx.post(base + "/admin/keys", json={"team": "contract-admin", "rpm_limit": 1}, headers=headers)
    assert created.status_code == 201 and created.json()["key"]
    listed = httpx.get(base + "/admin/keys", params={"team": "contract-admin"}, headers=headers).json()
    assert created.json()["key"] not in orjson.dumps(listed).decode()  # never shown again
