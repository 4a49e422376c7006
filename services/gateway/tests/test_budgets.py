"""Spend against budget per team: the gauges the budget alert reads follow Redis (real Redis, own prefix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.gateway.budgets import BudgetWatcher
from services.gateway.keys import KeyStore, TeamRecord
from services.gateway.limits import Limiter
from services.gateway.metrics import GatewayMetrics


def _value(metrics: GatewayMetrics, name: str, team: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"team": team})


async def test_gauges_follow_spend_and_budget(store: KeyStore, limiter: Limiter) -> None:
    """Settled spend shows up as USD beside the budget; a team without a budget has spend but no budget series."""
    metrics = GatewayMetrics(CollectorRegistry())
    await store.upsert_team(TeamRecord("alpha", budget_nusd=10_000_000_000))  # 10 USD
    _, record = await store.create(
        team="alpha", project="p", name="k", allowed_models=[], rpm_limit=None, tpm_limit=None, budget_nusd=None
    )
    reservation = await limiter.admit(record, tokens=100, cost_nusd=3_000_000_000)
    await limiter.settle(reservation, 80, 2_500_000_000)  # 2.5 USD really used
    await store.upsert_team(TeamRecord("beta"))
    watcher = BudgetWatcher(store, limiter, metrics, interval_s=60)

    await watcher.refresh()

    assert _value(metrics, "llmops_gateway_team_spend_usd", "alpha") == 2.5
    assert _value(metrics, "llmops_gateway_team_budget_usd", "alpha") == 10.0
    assert _value(metrics, "llmops_gateway_team_spend_usd", "beta") == 0.0
    assert _value(metrics, "llmops_gateway_team_budget_usd", "beta") is None


async def test_a_removed_budget_removes_its_series(store: KeyStore, limiter: Limiter) -> None:
    """A budget lifted is not left behind as a stale value the alert keeps reading."""
    metrics = GatewayMetrics(CollectorRegistry())
    await store.upsert_team(TeamRecord("alpha", budget_nusd=1_000_000_000))
    watcher = BudgetWatcher(store, limiter, metrics, interval_s=60)
    await watcher.refresh()
    assert _value(metrics, "llmops_gateway_team_budget_usd", "alpha") == 1.0

    await store.upsert_team(TeamRecord("alpha"))
    await watcher.refresh()

    assert _value(metrics, "llmops_gateway_team_budget_usd", "alpha") is None
    assert _value(metrics, "llmops_gateway_team_spend_usd", "alpha") == 0.0
