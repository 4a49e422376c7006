"""Prometheus series of the RAG service (one registry owned by the app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_RETRIEVAL_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5)


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
