"""Admission of requests that are not LLM calls (RAG retrieval and ingestion, batch uploads) against a key's limits.

They use the Limiter's counters, so a key's requests per minute are one count across chat, RAG and batch. No tokens
are reserved; one nano-USD is, and refunded at once, so a key or team whose budget is already spent is refused (402)
while one with budget left is not charged.
"""

from __future__ import annotations

from llmops_common.errors import APIError
from services.gateway.keys import KeyRecord
from services.gateway.limits import LIMIT_LABELS, Limiter, LimitExceeded
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.replies import limit_error

_PROBE_NUSD = 1  # the smallest cost: admitted while spend < budget


class UsageMeter:
    """Counts one request of `kind` against the key's and team's rpm, and refuses spent budgets."""

    def __init__(self, limiter: Limiter, metrics: GatewayMetrics) -> None:
        self.limiter = limiter
        self.metrics = metrics

    async def admit(self, record: KeyRecord, kind: str) -> None:
        """Admit one request or raise the APIError the chat path would (429 with Retry-After, 402)."""
        try:
            reservation = await self.limiter.admit(record, 0, _PROBE_NUSD)
        except LimitExceeded as exc:
            self.metrics.limit_rejections.labels(record.team, exc.limit).inc()
            self.metrics.usage_admissions.labels(record.team, kind, exc.limit).inc()
            if exc.is_budget:
                raise APIError(
                    402,
                    f"{exc.limit}_exceeded",
                    f"{LIMIT_LABELS[exc.limit][0]} exhausted: spent ${nano_to_usd(exc.used):.6f} of "
                    f"${nano_to_usd(exc.maximum):.6f}; ask an admin to raise it",
                ) from None
            raise limit_error(exc) from None
        await self.limiter.settle(reservation, 0, 0)
        self.metrics.usage_admissions.labels(record.team, kind, "admitted").inc()
