"""Prometheus series of the RAG service (one registry owned by the app)."""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.rag.jobs import FINAL
from services.rag.schemas import Strategy

_RETRIEVAL_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5)
ANSWER_OUTCOMES = ("answered", "not_found", "degraded", "refused")
DOCUMENT_STATUSES = ("indexed", "unchanged", "duplicate", "failed")


class RagMetrics:
    """Ingestion counts, retrieval latency by strategy, answer outcomes including fallbacks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.documents = Counter(
            "llmops_rag_ingested_documents_total", "Documents processed, by outcome.", ["status"], registry=registry
        )
        self.chunks = Counter("llmops_rag_ingested_chunks_total", "Chunks embedded and stored.", registry=registry)
        self.jobs = Counter(
            "llmops_rag_ingest_jobs_total", "Ingestion jobs finished, by status.", ["status"], registry=registry
        )
        self.jobs_running = Gauge(
            "llmops_rag_ingest_jobs_running", "Ingestion jobs queued or running.", registry=registry
        )
        self.retrieval = Histogram(
            "llmops_rag_retrieval_duration_seconds",
            "Query embedding plus Qdrant search.",
            ["strategy"],
            buckets=_RETRIEVAL_BUCKETS,
            registry=registry,
        )
        self.answers = Counter(
            "llmops_rag_answers_total",
            "Answers by outcome: answered, not_found (no LLM call), degraded (LLM unreachable), refused (gateway 4xx).",
            ["outcome"],
            registry=registry,
        )
        self.store_errors = Counter(
            "llmops_rag_store_unavailable_total", "Requests answered 503 because Qdrant failed.", registry=registry
        )
        self.events_emitted = Counter(
            "llmops_rag_trace_events_emitted_total", "Trace events written to the stream.", registry=registry
        )
        self.events_dropped = Counter(
            "llmops_rag_trace_events_dropped_total",
            "Trace events dropped because Redis was unreachable until the buffer filled.",
            registry=registry,
        )
        # Every known label value gets its series at 0 now: a labelled counter has no series until its first
        # event, so `rate()` over the first answer (or job, or query) would read nothing and panels "No data".
        for outcome in ANSWER_OUTCOMES:
            self.answers.labels(outcome)
        for status in DOCUMENT_STATUSES:
            self.documents.labels(status)
        for status in FINAL:
            self.jobs.labels(status)
        for strategy in get_args(Strategy):
            self.retrieval.labels(strategy)
