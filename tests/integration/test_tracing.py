"""One request is one trace from the gateway to the engine: W3C context crosses the hop, spans carry the
GenAI semantic-convention attributes, and the trace event names the trace."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.fixtures import MODEL, REDIS_URL
from tests.support.servers import uvicorn_service
from tests.support.trace_events import wait_for_events

pytestmark = pytest.mark.integration


def _spans(path: Path, trace_id: str, want: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # spans are exported in batches every 0.5 s
        if path.exists():
            spans = [json.loads(line) for line in path.read_text().splitlines()]
            spans = [s for s in spans if s["trace_id"] == trace_id]
            if len(spans) >= want:
                return spans
        time.sleep(0.2)
    raise AssertionError(f"fewer than {want} spans of trace {trace_id} in {path}")


def test_gateway_to_inference_is_one_trace(start_gateway, tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    tracing = {"OTEL_TRACES_EXPORTER": "file", "LLMOPS_TRACES_FILE": str(traces)}
    token = "test-inference-token"  # as the platform runs it: the gateway holds inference's service token
    with uvicorn_service(
        "services.inference.app:create_app",
        {**tracing, "INFERENCE_PARALLEL_SLOTS": "1", "INFERENCE_SERVICE_TOKEN": token},
        log_path=tmp_path / "inference.log",
    ) as inference:
        deployment = {"name": "traced", "url": inference + "/v1", "model": MODEL, "api_key": token}
        gateway = start_gateway(
            [{"name": MODEL, "deployments": [deployment]}],
            env=tracing,
        )
        raw = gateway.openai(gateway.key()).chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=3,
            extra_headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
        usage = raw.parse().usage
        trace_id = "0af7651916cd43dd8448eb211c80319c"  # the caller's trace is continued, not replaced
        spans = _spans(traces, trace_id, 2)
    by_service = {s["service"]: s for s in spans}
    gw, inf = by_service["llmops-gateway"], by_service["llmops-inference"]
    assert gw["parent_id"] == "b7ad6b7169203331" and inf["parent_id"] == gw["span_id"]
    assert gw["kind"] == inf["kind"] == "SERVER"
    assert gw["attributes"]["gen_ai.request.model"] == MODEL
    assert gw["attributes"]["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert inf["attributes"]["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    events = wait_for_events(REDIS_URL, gateway.events_stream, lambda seen: bool(seen))
    assert events[-1]["trace_id"] == trace_id
