"""Prometheus series of the gateway: traffic, tokens, cost, latency, overhead, limits, fallbacks, circuits."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gateway.routing import Deployment

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1)


class _CircuitCollector(Collector):
    """Reads breaker states at scrape time, so the request path pays nothing for this gauge."""

    def __init__(self, deployments: Callable[[], list[Deployment]]) -> None:
        self.deployments = deployments

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "llmops_gateway_circuit_state",
            "Circuit state per deployment: 0 closed, 1 half-open, 2 open.",
            labels=["deployment"],
        )
        for dep in self.deployments():
            family.add_metric([dep.name], dep.breaker.state)
        yield family


class GatewayMetrics:
    """All series in one registry owned by the app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "llmops_gateway_requests_total",
            "Requests by team, model and HTTP status.",
            ["team", "model", "status"],
            registry=registry,
        )
        self.tokens = Counter(
            "llmops_gateway_tokens_total",
            "Tokens metered, by team, model and kind (prompt|completion).",
            ["team", "model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "llmops_gateway_cost_usd_total", "Spend in USD by team and model.", ["team", "model"], registry=registry
        )
        self.latency = Histogram(
            "llmops_gateway_request_duration_seconds",
            "End-to-end latency seen by the caller (full stream for streams).",
            ["model"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.ttft = Histogram(
            "llmops_gateway_time_to_first_token_seconds",
            "Time to the first streamed byte from the deployment.",
            ["model"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.overhead = Histogram(
            "llmops_gateway_overhead_seconds",
            "Time the gateway itself adds (total minus time waiting on the deployment).",
            buckets=_OVERHEAD,
            registry=registry,
        )
        self.limit_rejections = Counter(
            "llmops_gateway_limit_rejections_total",
            "Requests refused by a limit or budget.",
            ["team", "limit"],
            registry=registry,
        )
        # Spend against budget per team (budgets.BudgetWatcher sets them from Redis): the budget alert reads them.
        self.team_spend = Gauge(
            "llmops_gateway_team_spend_usd",
            "A team's accumulated spend in USD (requests in flight included), as counted against its budget.",
            ["team"],
            registry=registry,
        )
        self.team_budget = Gauge(
            "llmops_gateway_team_budget_usd",
            "A team's budget in USD (only teams with a budget).",
            ["team"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "llmops_gateway_auth_failures_total", "Requests refused at authentication.", ["reason"], registry=registry
        )
        self.fallbacks = Counter(
            "llmops_gateway_fallbacks_total",
            "Times a deployment failed and the next one was tried.",
            ["model", "from_deployment"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "llmops_gateway_upstream_errors_total",
            "Failed attempts per deployment and reason.",
            ["deployment", "reason"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "llmops_gateway_trace_events_dropped_total",
            "Trace events dropped because the emit buffer was full (Redis down for long).",
            registry=registry,
        )
        self.events_emitted = Counter(
            "llmops_gateway_trace_events_emitted_total", "Trace events written to the stream.", registry=registry
        )

        self.guardrail_checks = Counter(
            "llmops_gateway_guardrail_checks_total",
            "Guardrail checks by stage (input|output) and decision (allow|flag|redact|block|unavailable).",
            ["stage", "decision"],
            registry=registry,
        )
        self.guardrail_latency = Histogram(
            "llmops_gateway_guardrail_latency_seconds",
            "Time the gateway waited for a guardrail check.",
            ["stage"],
            buckets=_OVERHEAD,
            registry=registry,
        )
        self.guardrail_failures = Counter(
            "llmops_gateway_guardrail_failures_total",
            "Guardrail calls that failed or timed out, by stage and the fail mode applied (open passes, closed 503s).",
            ["stage", "fail_mode"],
            registry=registry,
        )

        self.usage_over_reservation = Counter(
            "llmops_gateway_usage_over_reservation_total",
            "Answers whose completion tokens exceeded the bound the gateway sent and reserved (an engine ignoring "
            "max_tokens); charged as used.",
            ["model"],
            registry=registry,
        )

        self.usage_admissions = Counter(
            "llmops_gateway_usage_admissions_total",
            "Requests other than LLM calls (RAG query/ingest, batch files and batches) counted against a key's "
            "limits, by team, kind and outcome (admitted, or the limit that refused it).",
            ["team", "kind", "outcome"],
            registry=registry,
        )

        self.cache_lookups = Counter(
            "llmops_gateway_cache_lookups_total",
            "Response-cache lookups of cacheable requests, by model, layer (exact; semantic: after an exact miss, "
            "on routes with cache.semantic) and outcome (hit|miss|error).",
            ["model", "layer", "outcome"],
            registry=registry,
        )
        self.cache_similarity = Histogram(
            "llmops_gateway_cache_semantic_similarity",
            "Best cosine similarity a semantic lookup found among its context's indexed questions, by model "
            "(what to look at before moving cache.semantic.threshold).",
            ["model"],
            buckets=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0),
            registry=registry,
        )
        self.cache_embed_seconds = Histogram(
            "llmops_gateway_cache_embed_seconds",
            "Time to embed one last user message for the semantic cache (off the event loop, queue included).",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5),
            registry=registry,
        )
        self.cache_semantic_writes = Counter(
            "llmops_gateway_cache_semantic_writes_total",
            "Questions added to the semantic index after their answer was stored, by model and outcome "
            "(indexed|error).",
            ["model", "outcome"],
            registry=registry,
        )
        self.cache_bytes = Counter(
            "llmops_gateway_cache_bytes_total",
            "Bytes served from (served) and written to (stored) the response cache, by model.",
            ["model", "direction"],
            registry=registry,
        )
        self.cache_stores = Counter(
            "llmops_gateway_cache_stores_total",
            "Answers offered to the response cache, by model and outcome "
            "(stored|too_large|team_full|unchecked|other_version|error).",
            ["model", "outcome"],
            registry=registry,
        )
        self.cache_saved = Counter(
            "llmops_gateway_cache_saved_usd_total",
            "Spend avoided by cache hits (the stored answer's price minus what the hit was charged), by model.",
            ["model"],
            registry=registry,
        )
        self.cache_evictions = Counter(
            "llmops_gateway_cache_evictions_total",
            "Live cache entries evicted to keep a team under GATEWAY_CACHE_TEAM_BYTES_MAX.",
            registry=registry,
        )

    def watch_circuits(self, deployments: Callable[[], list[Deployment]]) -> None:
        """Export breaker states of the route table's deployments."""
        self.registry.register(_CircuitCollector(deployments))
