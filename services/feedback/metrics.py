"""Prometheus series of the feedback service, in a registry owned by the app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class FeedbackMetrics:
    """Pipeline health, feedback volume and drift scores."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "llmops_feedback_events_total",
            "Stream entries handled, by outcome (stored, duplicate, invalid).",
            ["outcome"],
            registry=registry,
        )
        self.store_errors = Counter(
            "llmops_feedback_store_errors_total", "Batches the store failed to commit (retried).", registry=registry
        )
        self.redis_errors = Counter(
            "llmops_feedback_redis_errors_total", "Failed calls to the Redis stream (retried).", registry=registry
        )
        self.lag = Histogram(
            "llmops_feedback_event_lag_seconds",
            "From the event's timestamp to its commit in the store.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.last_lag = Gauge(
            "llmops_feedback_event_lag_last_seconds", "Lag of the newest committed event.", registry=registry
        )
        self.stream_backlog = Gauge(
            "llmops_feedback_stream_backlog",
            "Entries in the stream the group has not read yet (XINFO GROUPS lag).",
            registry=registry,
        )
        self.pending = Gauge(
            "llmops_feedback_stream_pending", "Entries delivered but not yet acknowledged.", registry=registry
        )
        self.batch_size = Histogram(
            "llmops_feedback_batch_size",
            "Events per committed batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
            registry=registry,
        )
        self.claimed = Counter(
            "llmops_feedback_claimed_total", "Pending entries recovered from dead consumers.", registry=registry
        )
        self.feedback = Counter(
            "llmops_feedback_submissions_total", "Feedback submissions, by kind.", ["kind"], registry=registry
        )
        self.label_queue = Gauge(
            "llmops_feedback_label_queue_items", "Labeling queue items by status.", ["status"], registry=registry
        )
        self.drift_score = Gauge(
            "llmops_feedback_drift_score",
            "Drift of the current window against the reference window, per signal.",
            ["signal", "scope"],
            registry=registry,
        )
        self.drift_threshold = Gauge(
            "llmops_feedback_drift_threshold", "Alert threshold per drift signal.", ["signal"], registry=registry
        )
        self.drift_alert = Gauge(
            "llmops_feedback_drift_alert",
            "1 while a drift signal is over its threshold.",
            ["signal", "scope"],
            registry=registry,
        )
        self.drift_samples = Gauge(
            "llmops_feedback_drift_window_events",
            "Events in each drift window.",
            ["window", "scope"],
            registry=registry,
        )
        self.drift_runs = Counter(
            "llmops_feedback_drift_runs_total", "Drift computations, by outcome.", ["outcome"], registry=registry
        )
        # Known label values start at 0, so `rate()` sees the first event and panels show 0 rather than "No data".
        for outcome in ("stored", "duplicate", "invalid", "trimmed"):
            self.events.labels(outcome)
        for kind in ("thumbs", "rating"):
            self.feedback.labels(kind)
        for outcome in ("ok", "error"):
            self.drift_runs.labels(outcome)
