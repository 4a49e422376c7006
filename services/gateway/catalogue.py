"""The model catalogue and price table from the registry (its `production` aliases), cached and refreshed.

The routes file says *where* a model is served; the registry says *which version* is in production and
*what it costs*. When the registry is unreachable the last good catalogue (or the routes file's prices)
stays in force, so a registry outage never stops traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

import aiohttp
import orjson

from services.gateway.pricing import Price
from services.gateway.routing import RouteTable

log = logging.getLogger("gateway.catalogue")


class RegistryCatalogue:
    """Polls GET {registry}/v1/catalogue?alias=production and applies versions and prices to the route table."""

    def __init__(self, registry_url: str, routes: RouteTable, refresh_s: float) -> None:
        self.url = registry_url.rstrip("/") + "/v1/catalogue?alias=production"
        self.routes = routes
        self.refresh_s = refresh_s
        self.versions: dict[str, str] = {}
        self.refreshed_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def apply(self, catalogue: dict[str, Any]) -> int:
        """Update versions and prices of the routed models the catalogue lists; returns how many matched."""
        matched = 0
        for entry in catalogue.get("models", []):
            route = self.routes.get(entry.get("name", ""))
            if route is None:
                continue  # registered but not routed anywhere: nothing to serve it with
            matched += 1
            self.versions[route.name] = str(entry.get("version"))
            prices = (float(entry.get("price_per_1m_input") or 0), float(entry.get("price_per_1m_output") or 0))
            if all(math.isfinite(p) and 0 <= p <= 1e6 for p in prices):  # else keep the last good price
                route.price = Price(*prices)
            else:
                log.warning("catalogue price out of range; keeping the last one", extra={"model": route.name})
        self.refreshed_at = time.time()
        return matched

    async def refresh(self, session: aiohttp.ClientSession) -> bool:
        """One poll; False (and the old catalogue kept) when the registry cannot answer."""
        try:
            async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                self.apply(await resp.json(loads=orjson.loads))
                return True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("registry catalogue not refreshed; keeping the last one", extra={"error": str(exc)})
            return False

    async def start(self) -> None:
        """First poll now (bounded), then in the background."""
        self._session = aiohttp.ClientSession()
        await self.refresh(self._session)
        self._task = asyncio.create_task(self._loop(), name="registry-catalogue")

    async def _loop(self) -> None:
        assert self._session is not None
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh(self._session)

    async def stop(self) -> None:
        """Stop polling."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
