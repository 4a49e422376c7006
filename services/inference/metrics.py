"""Engine-agnostic Prometheus series of the inference service (the same names for llama.cpp and vLLM)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ITL_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class InferenceMetrics:
    """All series live in one registry owned by the app (no module-level globals)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "llmops_inference_requests_total",
            "Requests by model, endpoint and outcome.",
            ["model", "version", "endpoint", "status"],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "llmops_inference_prompt_tokens_total", "Prompt tokens processed.", ["model", "version"], registry=registry
        )
        self.completion_tokens = Counter(
            "llmops_inference_completion_tokens_total",
            "Completion tokens generated.",
            ["model", "version"],
            registry=registry,
        )
        self.ttft = Histogram(
            "llmops_inference_time_to_first_token_seconds",
            "Time from admission to the first generated token.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "llmops_inference_inter_token_latency_seconds",
            "Time between consecutive streamed tokens.",
            ["model", "version"],
            buckets=_ITL_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            "llmops_inference_request_duration_seconds",
            "End-to-end request latency, queue wait included.",
            ["model", "version", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "llmops_inference_queue_wait_seconds",
            "Time spent waiting for a generation slot.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "llmops_inference_queue_depth", "Requests waiting for a generation slot.", registry=registry
        )
        self.running = Gauge("llmops_inference_running_requests", "Generations running now.", registry=registry)
        self.queued_tokens = Gauge(
            "llmops_inference_queued_tokens",
            "Admission cost (weighted prompt tokens + max_tokens) of the requests waiting for a slot.",
            registry=registry,
        )
        self.running_tokens = Gauge(
            "llmops_inference_running_tokens",
            "Admission cost (weighted prompt tokens + max_tokens) of the generations running now; at most "
            "INFERENCE_MAX_RUNNING_TOKENS unless one request alone costs more.",
            registry=registry,
        )
        self.rejections = Counter(
            "llmops_inference_admission_rejections_total",
            "Requests refused by admission control (429).",
            registry=registry,
        )
        self.swaps = Counter(
            "llmops_inference_version_swaps_total",
            "Times a new production version was loaded, warmed and swapped in.",
            registry=registry,
        )
        self.model_ready = Gauge(
            "llmops_inference_model_ready", "1 when the engine can serve.", ["model", "version"], registry=registry
        )
