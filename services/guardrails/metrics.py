"""Prometheus series of the guardrails service, in a registry owned by the app."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Checks take about a millisecond; the buckets resolve the 10 ms budget finely.
_CHECK_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _FindingLike(Protocol):
    @property
    def detector(self) -> str: ...

    @property
    def action(self) -> str: ...


class GuardrailsMetrics:
    """Checks by decision, findings by detector and action, latencies."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checks = Counter(
            "llmops_guardrails_checks_total",
            "Checks (calls) by direction (input, content, output), policy and decision.",
            ["direction", "policy", "decision"],
            registry=registry,
        )
        self.findings = Counter(
            "llmops_guardrails_findings_total",
            "Findings by direction, detector and the action the policy gave them.",
            ["direction", "detector", "action"],
            registry=registry,
        )
        self.detector_errors = Counter(
            "llmops_guardrails_detector_errors_total",
            "Detector failures and timeouts (handled by the policy's fail mode).",
            ["detector"],
            registry=registry,
        )
        self.detector_timeouts = Counter(
            "llmops_guardrails_detector_timeouts_total",
            "Detectors that finished (or would have started) after the check's timeout_ms; also counted as errors.",
            ["direction", "detector"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "llmops_guardrails_verdict_cache_hits_total",
            "Texts (messages, chunks) judged before under the same policy, answered from the verdict cache.",
            ["direction"],
            registry=registry,
        )
        self.check_latency = Histogram(
            "llmops_guardrails_check_duration_seconds",
            "Time to run one check (all detectors), without HTTP.",
            ["direction"],
            buckets=_CHECK_BUCKETS,
            registry=registry,
        )
        self.detector_latency = Histogram(
            "llmops_guardrails_detector_duration_seconds",
            "Time of one detector inside a check.",
            ["direction", "detector"],
            buckets=_CHECK_BUCKETS,
            registry=registry,
        )
        self.models_loaded = Gauge(
            "llmops_guardrails_models_loaded", "1 when the detectors' models are loaded.", registry=registry
        )

    def observe(
        self, direction: str, policy: str, decision: str, findings: Iterable[_FindingLike], seconds: float
    ) -> None:
        """Record one finished check."""
        self.checks.labels(direction, policy, decision).inc()
        self.check_latency.labels(direction).observe(seconds)
        for f in findings:
            self.findings.labels(direction, f.detector, f.action).inc()
