"""The answer's mean log-probability reaches the trace event on routes that ask for it (`mean_logprob: true`).

The gateway asks its deployments with the internal body field `mean_logprob` (the inference service answers
`usage.mean_logprob`); clients cannot send that field themselves. A FAKE engine stands in for the inference service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.gateway.tests.harness import Harness, harness


@pytest.fixture
def asks(tmp_path: Path) -> Iterator[Harness]:
    with harness(tmp_path, route={"mean_logprob": True}) as gw:
        gw.engine.mean_logprob = -2.75
        yield gw


@pytest.mark.parametrize("stream", [False, True])
def test_the_route_asks_the_engine_and_the_event_carries_the_mean(asks: Harness, stream: bool) -> None:
    key, _ = asks.key()
    response = asks.chat(key, stream=stream)
    assert response.status_code == 200, response.text
    assert asks.engine.requests[-1]["body"]["mean_logprob"] is True
    assert asks.event(response.headers["x-request-id"])["mean_logprob"] == -2.75


def test_a_route_that_does_not_ask_sends_nothing_and_the_event_says_unknown(tmp_path: Path) -> None:
    with harness(tmp_path) as gw:
        key, _ = gw.key()
        response = gw.chat(key)
        assert response.status_code == 200
        assert "mean_logprob" not in gw.engine.requests[-1]["body"]
        assert gw.event(response.headers["x-request-id"])["mean_logprob"] is None


def test_clients_cannot_send_the_internal_field(asks: Harness) -> None:
    key, _ = asks.key()
    response = asks.chat(key, mean_logprob=True)
    assert response.status_code == 400 and "mean_logprob" in response.text
    assert asks.engine.requests == []
