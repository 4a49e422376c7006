"""Prometheus series of the registry service, in a registry owned by the app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class RegistryMetrics:
    """Counters for writes, promotions and cache use; latency of alias resolution and MLflow calls."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.writes = Counter(
            "llmops_registry_writes_total",
            "Changes committed, by object type and action.",
            ["object_type", "action"],
            registry=registry,
        )
        self.promotions = Counter(
            "llmops_registry_promotions_total",
            "Promotion requests by outcome.",
            ["object_type", "outcome"],
            registry=registry,
        )
        self.cache = Counter(
            "llmops_registry_cache_total", "Cache lookups on the read path.", ["kind", "result"], registry=registry
        )
        self.resolve_latency = Histogram(
            "llmops_registry_alias_resolve_seconds",
            "Time to resolve an alias to a version.",
            ["kind", "cached"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.mirror_failures = Counter(
            "llmops_registry_mlflow_mirror_failures_total",
            "Audit entries that could not be copied onto MLflow objects.",
            registry=registry,
        )
        self.tamper = Counter(
            "llmops_registry_tamper_detected_total",
            "Changes found in MLflow that the registry did not make (moved aliases, rewritten or forged tags), "
            "counted once per finding. Alert on any increase.",
            ["object_type", "kind"],
            registry=registry,
        )
        self.tampered = Gauge(
            "llmops_registry_tampered_objects",
            "Models and prompts whose MLflow state disagreed with the audit log at the last check; not served.",
            registry=registry,
        )
        self.auth_failures = Counter(
            "llmops_registry_auth_failures_total", "Refused calls by reason.", ["reason"], registry=registry
        )
