"""Admission of requests that are not LLM calls (RAG retrieval and ingestion, batch uploads) against a key's limits.

They use the Limiter's counters, so a key's requests per minute are one count across chat, RAG and batch. A RAG
request also reports the tokens it embeds (its query, or a group of chunks of an admitted ingestion: kind
`rag.embed`, which counts no request): they are checked against the key's and team's tokens per minute and charged
at GATEWAY_EMBEDDING_PRICE_PER_1M, in one atomic step, before the embedding runs. Without tokens nothing is charged:
one nano-USD is reserved and refunded at once, so a key or team whose budget is already spent is refused (402)
while one with budget left is not charged.
"""

from __future__ import annotations

from llmops_common.errors import APIError
from services.gateway.keys import KeyRecord
from services.gateway.limits import LIMIT_LABELS, Limiter, LimitExceeded
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import Price, nano_to_usd
from services.gateway.replies import limit_error

_PROBE_NUSD = 1  # the smallest cost: admitted while spend < budget
EMBEDDINGS = "embeddings"  # the `model` label of embedding tokens and spend in the gateway's metrics
# Kinds that are part of a request already counted against the rpm (only their tokens count).
_NO_REQUEST = frozenset({"rag.embed"})


class UsageMeter:
    """Counts one request of `kind` (and the tokens it embeds) against the key's and team's limits."""

    def __init__(self, limiter: Limiter, metrics: GatewayMetrics, embedding_price_per_1m: float = 0.0) -> None:
        self.limiter = limiter
        self.metrics = metrics
        self.embedding_price = Price(input_per_1m=embedding_price_per_1m)

    async def admit(self, record: KeyRecord, kind: str, tokens: int = 0) -> int:
        """Admit one request (charging `tokens` embedded tokens) or raise the APIError the chat path would (429
        with Retry-After, 402). Returns the cost charged in nano-USD."""
        cost = self.embedding_price.cost_nano(tokens, 0)
        requests = 0 if kind in _NO_REQUEST else 1
        try:
            reservation = await self.limiter.admit(record, tokens, max(cost, _PROBE_NUSD), requests=requests)
        except LimitExceeded as exc:
            self.metrics.limit_rejections.labels(record.team, exc.limit).inc()
            self.metrics.usage_admissions.labels(record.team, kind, exc.limit).inc()
            if exc.is_budget:
                raise APIError(
                    402,
                    f"{exc.limit}_exceeded",
                    f"{LIMIT_LABELS[exc.limit][0]} exhausted: spent ${nano_to_usd(exc.used):.6f} of "
                    f"${nano_to_usd(exc.maximum):.6f}"
                    + (f"; embedding {tokens} tokens costs ${nano_to_usd(cost):.6f}" if tokens else "")
                    + "; ask an admin to raise it",
                ) from None
            raise limit_error(exc) from None
        await self.limiter.settle(reservation, tokens, cost)  # refunds the probe when nothing is charged
        self.metrics.usage_admissions.labels(record.team, kind, "admitted").inc()
        if tokens:
            self.metrics.tokens.labels(record.team, EMBEDDINGS, "embedding").inc(tokens)
            self.metrics.cost.labels(record.team, EMBEDDINGS).inc(nano_to_usd(cost))
        return cost
