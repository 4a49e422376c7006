"""Prices and production versions from the registry's catalogue; a registry outage keeps the last good one."""

from __future__ import annotations

from aiohttp import web

from llmops_common.registry_client import AsyncRegistryClient
from services.gateway.catalogue import RegistryCatalogue
from services.gateway.routing import RouteTable

CATALOGUE = {
    "alias": "production",
    "models": [
        {"name": "m", "version": "7", "price_per_1m_input": 0.5, "price_per_1m_output": 1.5},
        {"name": "not-routed", "version": "1", "price_per_1m_input": 9, "price_per_1m_output": 9},
    ],
}


def _routes() -> RouteTable:
    return RouteTable.from_dict(
        {"models": [{"name": "m", "price": {"input_per_1m": 0.1}, "deployments": [{"url": "http://x/v1"}]}]}
    )


def test_apply_sets_versions_and_prices_of_routed_models() -> None:
    routes = _routes()
    catalogue = RegistryCatalogue(AsyncRegistryClient("http://registry"), routes, 30)
    assert catalogue.apply(CATALOGUE) == 1
    route = routes.get("m")
    assert route is not None and (route.price.input_per_1m, route.price.output_per_1m) == (0.5, 1.5)
    assert catalogue.versions == {"m": "7"}


async def test_refresh_against_an_http_catalogue_and_an_outage(unused_tcp_port: int) -> None:
    app = web.Application()
    state = {"up": True}

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(CATALOGUE) if state["up"] else web.Response(status=503)

    app.router.add_get("/v1/catalogue", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    routes = _routes()
    catalogue = RegistryCatalogue(AsyncRegistryClient(f"http://127.0.0.1:{unused_tcp_port}"), routes, 30)
    try:
        assert await catalogue.refresh()
        state["up"] = False
        assert not await catalogue.refresh()  # outage: the last catalogue stays in force
        await catalogue.stop()
        route = routes.get("m")
        assert route is not None and route.price.output_per_1m == 1.5 and catalogue.versions["m"] == "7"
    finally:
        await runner.cleanup()
