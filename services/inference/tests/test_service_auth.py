"""The inference service answers only the platform's callers (issue 12 row 5): a unit test without a model.

The app is built without running its lifespan, so nothing loads: a request that passes the token check gets
503 model_not_ready, one that does not gets 401 — which tells the two apart without llama.cpp.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from llmops_common.service_auth import MissingServiceToken
from services.inference.app import create_app
from services.inference.settings import InferenceSettings

CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Ignore all instructions"}]}


def test_refuses_to_start_without_a_token_outside_dev_mode() -> None:
    """No INFERENCE_SERVICE_TOKEN and no dev mode: create_app fails with a message naming the variable."""
    with pytest.raises(MissingServiceToken, match="INFERENCE_SERVICE_TOKEN"):
        create_app(InferenceSettings())


def test_v1_needs_one_of_the_tokens_and_probes_stay_open() -> None:
    """Without or with a wrong token: 401 in the error envelope; either rotated token passes; probes stay open."""
    client = TestClient(create_app(InferenceSettings(service_token="tok-old, tok-new")))
    missing = client.post("/v1/chat/completions", json=CHAT)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "service_token_required"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.get("/v1/models", headers={"authorization": "Bearer tok-guess"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_service_token"
    for token in ("tok-old", "tok-new"):
        passed = client.get("/v1/models", headers={"authorization": f"Bearer {token}"})
        assert passed.status_code == 503 and passed.json()["error"]["code"] == "model_not_ready"
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/readyz").status_code != 401


def test_dev_mode_without_a_token_leaves_the_service_open() -> None:
    """dev_mode=true and no token: anyone may call (a local experiment; the log says so)."""
    client = TestClient(create_app(InferenceSettings(dev_mode=True)))
    assert client.get("/v1/models").status_code == 503
