"""An engine killed mid-stream, hung mid-stream, or killed before answering, under a real gateway process; the
engine is a FAKE upstream that dies on cue (tests/support/fake_cutting_upstream.py), with a healthy FAKE spare.

What the client must see: once bytes were sent, a clean SSE error event (`upstream_stream_error`) then `[DONE]`,
within the deployment's timeout; before any byte, the request is retried on the fallback deployment. Never a hang.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import FAKE_MODEL, GatewayUnderTest, gateway_process
from tests.support.fake_cutting_upstream import CuttingUpstream, cutting_upstream_in_thread
from tests.support.fake_upstream import FakeUpstream
from tests.support.fixtures import REDIS_URL

pytestmark = pytest.mark.integration

STALL_TIMEOUT_S = 1.0  # the dying deployment's timeout_s (a stream's read timeout)
BOUND_S = 5.0


@pytest.fixture(scope="module")
def cutting() -> Iterator[CuttingUpstream]:
    with cutting_upstream_in_thread() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, cutting: CuttingUpstream, fake_upstream: FakeUpstream):
    folder: Path = tmp_path_factory.mktemp("upstream-faults")
    deployments = [
        {
            "name": "dying",
            "url": f"http://127.0.0.1:{cutting.port}/v1",
            "priority": 0,
            "retries": 0,
            "timeout_s": STALL_TIMEOUT_S,
        },
        {"name": "spare", "url": f"http://127.0.0.1:{fake_upstream.port}/v1", "priority": 1},
    ]
    defaults = {"circuit_failure_threshold": 1000}  # every request must reach the dying deployment first
    with gateway_process(folder, REDIS_URL, deployments, defaults=defaults) as gateway:
        yield gateway


def stream(gw: GatewayUnderTest, key: str) -> tuple[httpx.Response, list[str], float]:
    """POST a streamed chat; returns the response, its `data:` payloads, and how long the whole stream took."""
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.monotonic()
    with httpx.stream(
        "POST",
        gw.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as response:
        payloads = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
    return response, payloads, time.monotonic() - started


def assert_clean_error_then_done(payloads: list[str], took: float) -> None:
    assert payloads[-1] == "[DONE]", payloads
    error = json.loads(payloads[-2])["error"]
    assert error["code"] == "upstream_stream_error"
    assert json.loads(payloads[0])["choices"][0]["delta"]["content"] == "par"  # what was sent before the cut
    assert took < BOUND_S, f"the stream took {took:.1f}s"


@pytest.mark.parametrize("mode", ["cut", "cut_unframed"])
def test_engine_killed_mid_stream_ends_with_an_error_event_and_done(
    gw: GatewayUnderTest, cutting: CuttingUpstream, mode: str
) -> None:
    cutting.mode = mode
    key = gw.key("rel-cut")
    response, payloads, took = stream(gw, key)
    assert response.status_code == 200  # the stream had started: the error travels in it
    assert_clean_error_then_done(payloads, took)
    assert response.headers["x-llmops-deployment"] == "dying"  # bytes were sent: no silent retry elsewhere


def test_engine_hung_mid_stream_times_out_into_an_error_event(gw: GatewayUnderTest, cutting: CuttingUpstream) -> None:
    cutting.mode = "stall"
    response, payloads, took = stream(gw, gw.key("rel-stall"))
    assert response.status_code == 200
    assert_clean_error_then_done(payloads, took)
    assert took >= STALL_TIMEOUT_S


def test_engine_killed_before_answering_falls_back_to_the_spare(
    gw: GatewayUnderTest, cutting: CuttingUpstream, fake_upstream: FakeUpstream
) -> None:
    cutting.mode = "close_before_reply"
    key = gw.key("rel-fallback")
    before = cutting.requests
    response, payloads, took = stream(gw, key)
    assert response.status_code == 200
    assert response.headers["x-llmops-deployment"] == "spare"
    assert response.headers["x-llmops-fallbacks"] == "1"
    assert cutting.requests == before + 1  # it did reach the dying engine first
    texts = [json.loads(p)["choices"][0]["delta"].get("content") for p in payloads[:-1] if json.loads(p)["choices"]]
    assert "".join(t for t in texts if t) == "pong"
    assert payloads[-1] == "[DONE]"
    assert took < BOUND_S
    plain = gw.chat(key)  # and a whole (non-streamed) answer too
    assert plain.status_code == 200
    assert plain.headers["x-llmops-deployment"] == "spare"
