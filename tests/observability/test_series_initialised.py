"""Labelled counters start with a series at 0 for every label value the code writes: without it a counter has
no series until its first event, a panel over it says "No data" on a healthy platform, and `rate()` over the
first event reads nothing (issue 19: RAG's "Answers/s" stayed 0 after an answer)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.feedback.metrics import FeedbackMetrics
from services.rag.metrics import RagMetrics

CASES = [
    (RagMetrics, "llmops_rag_answers_total", "outcome", ["answered", "not_found", "degraded", "refused"]),
    (
        RagMetrics,
        "llmops_rag_ingest_jobs_total",
        "status",
        ["succeeded", "completed_with_errors", "failed", "cancelled"],
    ),
    (RagMetrics, "llmops_rag_ingested_documents_total", "status", ["indexed", "unchanged", "duplicate", "failed"]),
    (RagMetrics, "llmops_rag_retrieval_duration_seconds_count", "strategy", ["dense", "sparse", "hybrid"]),
    (FeedbackMetrics, "llmops_feedback_events_total", "outcome", ["stored", "duplicate", "invalid", "trimmed"]),
    (FeedbackMetrics, "llmops_feedback_submissions_total", "kind", ["thumbs", "rating"]),
    (FeedbackMetrics, "llmops_feedback_drift_runs_total", "outcome", ["ok", "error"]),
]


@pytest.mark.parametrize(("metrics", "series", "label", "values"), CASES, ids=lambda c: getattr(c, "__name__", c))
def test_labelled_series_exist_at_zero_before_the_first_event(
    metrics: type, series: str, label: str, values: list[str]
) -> None:
    registry = CollectorRegistry()
    metrics(registry)
    for value in values:
        assert registry.get_sample_value(series, {label: value}) == 0.0, f"{series}{{{label}={value!r}}} missing"
