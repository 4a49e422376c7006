"""The model catalogue and price table from the registry (its `production` aliases), cached and refreshed.

The routes file says *where* a model is served; the registry says *which version* is in production and
*what it costs*. When the registry is unreachable the last good catalogue (or the routes file's prices)
stays in force, so a registry outage never stops traffic.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from llmops_common.registry_client import AsyncRegistryClient, Poller, RegistryError
from services.gateway.pricing import Price
from services.gateway.routing import RouteTable

log = logging.getLogger("gateway.catalogue")


class RegistryCatalogue:
    """Polls the registry's catalogue (`production` aliases) and applies versions and prices to the route table.

    A background poll, off the request path, through the shared registry client (llmops_common.http).
    """

    def __init__(self, client: AsyncRegistryClient, routes: RouteTable, refresh_s: float) -> None:
        self.client = client
        self.routes = routes
        self.refresh_s = refresh_s
        self.versions: dict[str, str] = {}
        self.refreshed_at: float | None = None
        self._poller = Poller(self.refresh, refresh_s, "registry-catalogue")

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

    async def refresh(self) -> bool:
        """One poll; False (and the old catalogue kept) when the registry cannot answer."""
        try:
            self.apply(await self.client.catalogue("production"))
            return True
        except (RegistryError, ValueError, TypeError, AttributeError) as exc:
            log.warning("registry catalogue not refreshed; keeping the last one", extra={"error": str(exc)})
            return False

    async def start(self) -> None:
        """First poll now (bounded by the client's timeout), then in the background."""
        await self.refresh()
        self._poller.start()

    async def stop(self) -> None:
        """Stop polling and close the client."""
        await self._poller.stop()
        await self.client.aclose()
