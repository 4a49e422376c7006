"""The engine behind the gateway restarts (not replicated: one inference process). While it is down the gateway
answers 502 (the attempt failed) and, once the deployment's circuit is open, 503 no_deployment_available with a
Retry-After no longer than the rest of the cool-down; the first request after that, with the engine back, is
served. docs/operations.md (rolling restarts) quotes this behaviour; bench/rolling_restart.py measures it on the
whole platform."""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import gateway_process
from tests.support.fake_upstream import FakeUpstream, serve_in_thread
from tests.support.fixtures import REDIS_URL
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

COOLDOWN_S = 2.0


def test_a_restarting_engine_gets_clients_a_503_with_retry_after_then_service(tmp_path: Path) -> None:
    port = free_port()  # the engine's port: nothing listens there yet (it is restarting)
    deployment = {"name": "engine", "url": f"http://127.0.0.1:{port}/v1", "timeout_s": 5}
    defaults = {"retries": 0, "circuit_failure_threshold": 2, "circuit_cooldown_s": COOLDOWN_S}
    with gateway_process(tmp_path, REDIS_URL, [deployment], defaults=defaults) as gw:
        key = gw.key("restart")
        assert [gw.chat(key).status_code for _ in range(2)] == [502, 502]  # two failed attempts open the circuit
        refused = gw.chat(key)
        opened = time.monotonic()
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_deployment_available"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= math.ceil(COOLDOWN_S)

        engine = FakeUpstream()
        engine.serve = functools.partial(engine.serve, port)  # type: ignore[method-assign] # back on its port
        with serve_in_thread(engine):
            time.sleep(max(0.0, retry_after - (time.monotonic() - opened)))  # what the client was told to wait
            answered = gw.chat(key)
            assert answered.status_code == 200, answered.text
            assert engine.requests == 1
