"""Fallback and circuit breaking, with a FAKE fault-injecting upstream and a deployment that is down."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.fixtures import MODEL, Gateway, closed_port_url

pytestmark = pytest.mark.integration


def test_fallback_to_next_deployment_when_first_is_down(start_gateway, inference_url: str) -> None:
    gw: Gateway = start_gateway(
        [
            {
                "name": MODEL,
                "deployments": [
                    {"name": "down", "url": closed_port_url(), "model": MODEL, "priority": 0, "retries": 1},
                    {"name": "real", "url": inference_url + "/v1", "model": MODEL, "priority": 1},
                ],
            }
        ],
        defaults={"backoff_s": 0.01, "circuit_failure_threshold": 100},
    )
    oc = gw.openai(gw.key())
    raw = oc.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert raw.parse().choices[0].message.content is not None
    assert raw.headers["x-llmops-deployment"] == "real"
    assert raw.headers["x-llmops-fallbacks"] == "1"
    metrics = httpx.get(gw.url + "/metrics").text
    assert f'llmops_gateway_fallbacks_total{{from_deployment="down",model="{MODEL}"}} 1.0' in metrics
    assert 'llmops_gateway_upstream_errors_total{deployment="down",reason="connection_error"} 2.0' in metrics


def test_circuit_opens_skips_and_closes(start_gateway, fake_upstream: FakeUpstream) -> None:
    gw: Gateway = start_gateway(
        [
            {
                "name": "flaky-model",
                "deployments": [
                    {"name": "flaky", "url": f"http://127.0.0.1:{fake_upstream.port}/v1", "priority": 0},
                    {"name": "spare", "url": f"http://127.0.0.1:{fake_upstream.port}/v1", "priority": 1},
                ],
            }
        ],
        defaults={"retries": 0, "circuit_failure_threshold": 2, "circuit_cooldown_s": 1.5},
    )
    headers = {"authorization": f"Bearer {gw.key()}"}
    body = {"model": "flaky-model", "messages": [{"role": "user", "content": "x"}]}

    def call() -> httpx.Response:
        return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)

    def state(name: str) -> str:
        for line in httpx.get(gw.url + "/metrics").text.splitlines():
            if line.startswith(f'llmops_gateway_circuit_state{{deployment="{name}"}}'):
                return line.split()[-1]
        raise AssertionError("circuit gauge missing")

    fake_upstream.fail_with = 503  # both deployments point at the fake: every call fails
    assert call().status_code == 502
    assert call().status_code == 502
    assert state("flaky") == "2.0" and state("spare") == "2.0"  # both open after 2 failures
    before = fake_upstream.requests
    response = call()
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_deployment_available"
    assert "circuit open" in response.json()["error"]["message"]
    assert fake_upstream.requests == before  # an open circuit sends nothing
    fake_upstream.fail_with = None
    time.sleep(1.6)
    assert state("flaky") == "1.0"  # half-open: the next request is the probe
    response = call()
    assert response.status_code == 200 and response.headers["x-llmops-deployment"] == "flaky"
    assert state("flaky") == "0.0"
