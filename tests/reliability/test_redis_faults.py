"""Redis down then back, and Redis hung (SIGSTOP), under a real gateway process in front of a FAKE upstream.

The documented fail mode (services/gateway/README.md, docs/operations.md): without Redis the gateway cannot check
keys, limits or spend, so it refuses with 503 `state_store_unavailable` and `Retry-After` — fail closed for every
team, never a free request — within its Redis timeout, and serves again as soon as Redis answers, without restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import COST_USD, GatewayUnderTest, gateway_process
from tests.support.fake_cutting_upstream import CuttingUpstream, cutting_upstream_in_thread
from tests.support.fake_upstream import FakeUpstream
from tests.support.fault_redis import FaultRedis, fault_redis

pytestmark = pytest.mark.integration

REDIS_TIMEOUT_S = 1.0  # GATEWAY_REDIS_TIMEOUT_S of the gateway under test
BOUND_S = 5.0  # no request may take longer than this while Redis is down or hung


@pytest.fixture(scope="module")
def redis_server() -> Iterator[FaultRedis]:
    with fault_redis() as server:
        yield server


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, redis_server: FaultRedis, fake_upstream: FakeUpstream):
    folder: Path = tmp_path_factory.mktemp("redis-faults")
    deployments = [{"name": "fake", "url": f"http://127.0.0.1:{fake_upstream.port}/v1", "retries": 0}]
    env = {"GATEWAY_REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S)}
    with gateway_process(folder, redis_server.url, deployments, env) as gateway:
        yield gateway


def timed(gw: GatewayUnderTest, key: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = gw.chat(key, timeout=30)
    return response, time.monotonic() - started


BURST = 16


def burst(gw: GatewayUnderTest, key: str) -> list[tuple[httpx.Response, float]]:
    """BURST concurrent requests."""
    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(lambda _: timed(gw, key), range(BURST)))


def assert_refused_in_time(gw: GatewayUnderTest, key: str) -> None:
    response, took = timed(gw, key)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "state_store_unavailable"
    assert response.headers["retry-after"]
    assert took < BOUND_S, f"a request took {took:.1f}s while Redis was unavailable"


def wait_recovered(gw: GatewayUnderTest, key: str, within_s: float = 15.0) -> int:
    """Retry until the gateway serves again (no restart); returns how many requests succeeded (1)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        response, took = timed(gw, key)
        assert took < BOUND_S
        if response.status_code == 200:
            return 1
        assert response.status_code == 503, response.text
        time.sleep(0.2)
    raise AssertionError(f"the gateway did not recover within {within_s}s of Redis coming back")


def assert_spend_settles_to(gw: GatewayUnderTest, team: str, expected_usd: float, within_s: float = 5.0) -> None:
    """The team's spend reaches exactly `expected_usd` (admissions cut off by the fault are cancelled in the
    background once Redis answers) and stays there."""
    deadline = time.monotonic() + within_s
    while gw.spend_usd(team) != pytest.approx(expected_usd, rel=1e-6) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # nothing late (a buffered admission executed after the thaw) may change it afterwards
    assert gw.spend_usd(team) == pytest.approx(expected_usd, rel=1e-6)


def test_redis_down_then_back(gw: GatewayUnderTest, redis_server: FaultRedis) -> None:
    key = gw.key("rel-down")
    assert [r.status_code for r, _ in burst(gw, key)] == [200] * BURST  # the pool now holds BURST connections
    redis_server.stop()
    try:
        for _ in range(3):
            assert_refused_in_time(gw, key)
        assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 503
    finally:
        redis_server.start()
    served = BURST + wait_recovered(gw, key)
    # Regression: every pooled connection died with Redis, and each failed one request (503) after Redis was back;
    # the gateway now resends a command once on a fresh connection.
    assert [r.status_code for r, _ in burst(gw, key)] == [200] * BURST
    served += BURST
    # Counts are right: every served request charged once, refused ones never (no leaked reservation).
    assert_spend_settles_to(gw, "rel-down", served * COST_USD)
    # The key cache came back honest: a key revoked after the outage is refused at once (no stale record).
    key_id = next(k["key_id"] for k in gw.admin.get("/admin/keys", params={"team": "rel-down"}).json())
    gw.admin.delete(f"/admin/keys/{key_id}").raise_for_status()
    revoked = gw.chat(key)
    assert revoked.status_code == 401, revoked.text
    assert revoked.json()["error"]["code"] == "revoked_api_key"


def test_redis_hung_then_thawed(gw: GatewayUnderTest, redis_server: FaultRedis) -> None:
    key = gw.key("rel-hung")
    assert gw.chat(key).status_code == 200
    redis_server.freeze()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 3:  # hung for a few seconds; every request answered in bounded time
            assert_refused_in_time(gw, key)
        refused = burst(gw, key)  # no request queues behind the hung ones past the bound
        assert {r.status_code for r, _ in refused} == {503}
        assert max(took for _, took in refused) < BOUND_S
        # Liveness does not depend on Redis (an orchestrator must not restart the gateway for it); readiness
        # says not ready, within the bound too.
        live_started = time.monotonic()
        assert httpx.get(gw.url + "/healthz", timeout=10).status_code == 200
        assert time.monotonic() - live_started < 1.0
        ready_started = time.monotonic()
        assert httpx.get(gw.url + "/readyz", timeout=10).status_code == 503
        assert time.monotonic() - ready_started < BOUND_S
    finally:
        redis_server.thaw()
    served = 1 + wait_recovered(gw, key)
    assert gw.chat(key).status_code == 200
    served += 1
    # Regression: admissions sent to the frozen Redis ran when it woke up and stayed charged (a reservation of
    # max_tokens each, never settled) until the gateway learnt to cancel them.
    assert_spend_settles_to(gw, "rel-hung", served * COST_USD)


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[CuttingUpstream]:
    """A FAKE engine that takes 1.5 s to answer: Redis can fail while a request is in flight."""
    with cutting_upstream_in_thread() as slow:
        slow.mode, slow.delay_s = "slow", 1.5
        yield slow


@pytest.fixture(scope="module")
def slow_gw(tmp_path_factory: pytest.TempPathFactory, redis_server: FaultRedis, slow_upstream: CuttingUpstream):
    folder: Path = tmp_path_factory.mktemp("redis-faults-slow")
    deployments = [{"name": "slow", "url": f"http://127.0.0.1:{slow_upstream.port}/v1", "retries": 0}]
    env = {"GATEWAY_REDIS_TIMEOUT_S": str(REDIS_TIMEOUT_S)}
    with gateway_process(folder, redis_server.url, deployments, env) as gateway:
        yield gateway


@pytest.mark.parametrize("fault", ["down", "hung"])
def test_redis_fails_while_a_request_is_in_flight(
    slow_gw: GatewayUnderTest, slow_upstream: CuttingUpstream, redis_server: FaultRedis, fault: str
):
    team = f"rel-inflight-{fault}"
    key = slow_gw.key(team)
    with ThreadPoolExecutor(1) as pool:
        sent_before = slow_upstream.requests
        future = pool.submit(slow_gw.chat, key)
        # Once the engine has the request, it was admitted (reservation taken); the engine answers 1.5 s later.
        slow_upstream.wait_for_requests(sent_before + 1)
        redis_server.stop() if fault == "down" else redis_server.freeze()
        time.sleep(2.0)  # the engine answers while Redis is unavailable
        redis_server.start() if fault == "down" else redis_server.thaw()
        response = future.result(timeout=30)
    # The answer was produced: the caller gets it, and it is charged what it used, once, not its reservation.
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "pong"
    assert_spend_settles_to(slow_gw, team, COST_USD, within_s=10)
