"""Spend against budget per team, as gauges: what the budget alert and panel read.

The gateway enforces budgets itself (402 at admission); the gauges let an alert warn *before* a team runs into
its budget. Spend and budgets live in Redis, so a background task reads them every `interval_s` (a few GETs
per team, off the request path) rather than each request paying a round trip. Every replica exports the same
values: rules and panels take `max by (team)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from services.gateway.keys import KeyStore, TeamNotFound
from services.gateway.limits import Limiter
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd

log = logging.getLogger("llmops.gateway.budgets")


class BudgetWatcher:
    """Sets llmops_gateway_team_spend_usd and llmops_gateway_team_budget_usd from Redis, periodically."""

    def __init__(self, keys: KeyStore, limiter: Limiter, metrics: GatewayMetrics, interval_s: float) -> None:
        self.keys = keys
        self.limiter = limiter
        self.metrics = metrics
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._budgeted: set[str] = set()  # teams whose budget series exists (removed when the budget goes)
        self._spending: set[str] = set()

    async def refresh(self) -> None:
        """Read every team's spend and budget once and set the gauges."""
        budgeted: set[str] = set()
        teams = await self.keys.list_teams()
        for team in teams:
            try:
                record = await self.keys.get_team(team)
            except TeamNotFound:  # removed since it was listed
                continue
            self.metrics.team_spend.labels(team).set(nano_to_usd(await self.limiter.spend_nusd(team)))
            if record.budget_nusd is not None:
                self.metrics.team_budget.labels(team).set(nano_to_usd(record.budget_nusd))
                budgeted.add(team)
        for team in self._budgeted - budgeted:
            self.metrics.team_budget.remove(team)
        for team in self._spending - set(teams):
            self.metrics.team_spend.remove(team)
        self._budgeted, self._spending = budgeted, set(teams)

    def start(self) -> None:
        """Refresh now and every interval until stopped; a Redis failure is logged and retried next time."""

        async def loop() -> None:
            while True:
                try:
                    await self.refresh()
                except (RedisError, OSError) as exc:
                    log.warning("team spend not read; gauges keep their last values", extra={"error": str(exc)})
                await asyncio.sleep(self.interval_s)

        self._task = asyncio.create_task(loop(), name="budget-watcher")

    async def stop(self) -> None:
        """Stop the refresh task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
