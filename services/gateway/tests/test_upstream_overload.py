"""A deployment's 429 is load shedding, not a fault (bench/load.py): the gateway neither retries it at once (that
re-queues the load the engine just shed) nor counts it toward the circuit (three 429s had opened the circuit,
turning shed load into 30 s of 503s for everyone), and relays the deployment's own Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import Price
from services.gateway.routing import CircuitBreaker, Deployment, ModelRoute
from services.gateway.upstream import NoDeploymentAvailable, UpstreamClient


class Engine:
    """A fake deployment answering the statuses it is told to, counting calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.status = 429
        self.retry_after = "7"

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.status == 200:
            return web.json_response({"ok": True})
        return web.json_response({"error": {"code": "server_overloaded"}}, status=self.status,
                                 headers={"retry-after": self.retry_after})  # fmt: skip


@pytest.fixture
async def engines() -> AsyncIterator[tuple[list[Engine], list[str]]]:
    fakes, servers = [Engine(), Engine()], []
    for fake in fakes:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", fake.handle)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
    yield fakes, [str(s.make_url("/v1")) for s in servers]
    for server in servers:
        await server.close()


def route(urls: list[str]) -> ModelRoute:
    deps = [Deployment(name=f"d{i}", url=url, model="m", priority=i, retries=1, backoff_s=0.0,
                       breaker=CircuitBreaker(3, 30.0)) for i, url in enumerate(urls)]  # fmt: skip
    return ModelRoute(name="m", price=Price(0.0, 0.0), deployments=deps)


async def test_a_429_is_not_retried_nor_counted_and_its_retry_after_is_relayed(
    engines: tuple[list[Engine], list[str]],
) -> None:
    fakes, urls = engines
    client = UpstreamClient(GatewayMetrics(CollectorRegistry()))
    await client.start()
    try:
        r = route(urls)
        fakes[1].retry_after = "3"
        for _ in range(5):  # more 429s than the circuit's threshold
            with pytest.raises(NoDeploymentAvailable) as refused:
                await client.open(r, "/chat/completions", {"d0": b"{}", "d1": b"{}"}, stream=False)
            assert refused.value.all_overloaded and refused.value.retry_after_s == 3.0  # the soonest hint
        assert [f.calls for f in fakes] == [5, 5]  # one try each, no immediate retry
        assert all(d.breaker.state == CircuitBreaker.CLOSED for d in r.deployments)
        fakes[0].status = 200  # capacity came back: served at once, no circuit to wait out
        up = await client.open(r, "/chat/completions", {"d0": b"{}", "d1": b"{}"}, stream=False)
        assert up.response.status == 200 and up.deployment.name == "d0"
        up.response.release()
    finally:
        await client.stop()


async def test_a_429_beside_an_open_circuit_is_still_at_capacity(engines: tuple[list[Engine], list[str]]) -> None:
    fakes, urls = engines
    client = UpstreamClient(GatewayMetrics(CollectorRegistry()))
    await client.start()
    try:
        r = route(urls)
        for _ in range(3):
            r.deployments[1].breaker.record_failure()  # d1 is down: its circuit is open
        with pytest.raises(NoDeploymentAvailable) as refused:
            await client.open(r, "/chat/completions", {"d0": b"{}", "d1": b"{}"}, stream=False)
        # Not a 502: the model is at capacity (the proxy answers 429 upstream_overloaded with this Retry-After).
        assert refused.value.all_overloaded and refused.value.retry_after_s == 7.0
        assert fakes[1].calls == 0
    finally:
        await client.stop()


async def test_a_half_open_probe_answered_with_429_closes_the_circuit(engines: tuple[list[Engine], list[str]]) -> None:
    _, urls = engines
    now = [0.0]
    client = UpstreamClient(GatewayMetrics(CollectorRegistry()))
    await client.start()
    try:
        r = route(urls[:1])
        r.deployments[0].breaker = CircuitBreaker(1, 30.0, clock=lambda: now[0])
        r.deployments[0].breaker.record_failure()
        now[0] = 31.0  # half-open: the next request is the probe
        with pytest.raises(NoDeploymentAvailable):
            await client.open(r, "/chat/completions", {"d0": b"{}"}, stream=False)
        assert r.deployments[0].breaker.state == CircuitBreaker.CLOSED  # it answered: alive, not stuck half-open
    finally:
        await client.stop()
