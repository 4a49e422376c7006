"""The trace event schema (llmops_common.trace_schema) stays compatible: events as earlier producers wrote them
still parse, what today's producers write validates and round-trips, and the consumer refuses what it cannot
read with a reason (it dead-letters those)."""

from __future__ import annotations

import contextvars
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmops_common.request_id import bind_request_id
from llmops_common.trace_schema import (
    TRACE_SCHEMA_VERSION,
    InvalidTraceEvent,
    TraceEvent,
    parse_trace_event,
)
from services.feedback.events import InvalidEvent, parse_entry
from services.feedback.events import TraceEvent as StoredEvent
from services.gateway.call import Call, trace_event
from services.gateway.guardrails import Verdict
from services.gateway.keys import KeyRecord
from services.gateway.limits import Reservation
from services.gateway.requests import ClientRequest
from services.rag.events import RagEvents
from services.rag.gateway import Caller

HI = [{"role": "user", "content": "hi"}]
V1_EVENTS = Path(__file__).parent / "data" / "trace_events_v1.jsonl"


def v1_lines() -> list[bytes]:
    """Events exactly as the schema-1 producers wrote them (gateway chat and blocked, RAG, the oldest shape)."""
    return [line for line in V1_EVENTS.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("raw", v1_lines(), ids=lambda raw: orjson.loads(raw)["request_id"])
def test_events_written_by_earlier_producers_still_parse(raw: bytes) -> None:
    """Every stored v1 event parses, as the shared model and as the feedback service's own."""
    data = orjson.loads(raw)
    event = parse_trace_event(raw, TraceEvent)
    assert event.schema_version == 1 and event.request_id == data["request_id"]
    stored = parse_entry({b"event": raw})
    assert isinstance(stored, StoredEvent) and stored.text_withheld is None
    for key in ("team", "endpoint", "status", "prompt", "response"):
        if key in data:
            assert getattr(event, key) == data[key], key


def test_wire_shape_keeps_schema_1_names() -> None:
    """What producers write carries `schema` (its wire name since v1) and every field a v1 reader knows."""
    v1_keys = set(orjson.loads(v1_lines()[0]))
    wire = TraceEvent(request_id="r", ts=1.0, team="t", project="p", key_id="k", model="m", endpoint="chat", status=200)
    assert wire.wire()["schema"] == TRACE_SCHEMA_VERSION == 1
    assert v1_keys <= set(wire.wire())


def _gateway_call(verdicts: list[Verdict], **flags: Any) -> Call:
    record = KeyRecord(key_id="key-a", team="team-a", project="proj-a", name="n", key_hint="sk-…a")
    req = ClientRequest(
        kind="chat",
        model="smollm2-135m-instruct",
        stream=False,
        wants_usage=False,
        max_tokens=16,
        payload={"messages": [{"role": "user", "content": "hi"}]},
        body_bytes=50,
    )
    reservation = Reservation("tk", "tt", "sk", "st", 10, 100)
    call = Call(record, req, route=None, reservation=reservation, started=time.perf_counter(), verdicts=verdicts)  # type: ignore[arg-type]
    call.response_text = ["hello"]
    for name, value in flags.items():
        setattr(call, name, value)
    return call


@pytest.mark.parametrize(
    ("verdicts", "flags", "prompt", "response", "withheld"),
    [
        ([], {}, HI, "hello", []),
        ([Verdict("input", "redact", [{"detector": "pii"}])], {"input_redacted": True}, HI, "hello", []),
        ([Verdict("input", "block")], {"input_withheld": True}, None, "hello", ["prompt"]),
        ([Verdict("output", "block")], {"output_blocked": True}, HI, None, ["response"]),
    ],
)  # fmt: skip
def test_gateway_event_validates_and_round_trips(verdicts, flags, prompt, response, withheld) -> None:
    """The gateway's event is a TraceEvent whose JSON the consumer reads back unchanged."""

    def produce() -> TraceEvent:
        bind_request_id("req_gateway_1")  # in a copied context: nothing leaks into other tests
        return trace_event(_gateway_call(verdicts, **flags), 200, 3, 4, 5_000, 0.25, None, "7")

    event = contextvars.copy_context().run(produce)
    assert isinstance(event, TraceEvent)
    assert (event.prompt, event.response, event.withheld) == (prompt, response, withheld)
    back = parse_entry({b"event": orjson.dumps(event.wire())})
    assert back.model_dump(exclude={"text_withheld"}) == event.model_dump()
    assert back.request_id == "req_gateway_1" and back.model_version == "7" and back.latency_ms == 250.0


class _Writer:
    def __init__(self) -> None:
        self.events: list[TraceEvent] = []

    def emit_from(self, build: Any) -> None:
        self.events.append(build())


def test_rag_event_validates_and_round_trips() -> None:
    """RAG's event (retrieved chunks, the question as prompt) is a TraceEvent the consumer reads back."""
    events = RagEvents.__new__(RagEvents)
    events._writer = _Writer()  # type: ignore[assignment]
    caller = Caller(key="sk-x", team="team-a", project="proj-a", key_id="key-a")
    out = {
        "answer": "Fish [1].",
        "model": "smollm2-135m-instruct",
        "prompt_version": "4",
        "usage": {"prompt_tokens": 300, "completion_tokens": 40},
        "passages": [{"chunk_id": "c1", "document_id": "d1", "score": 0.83, "text": "cats eat fish"}],
    }
    events.record(caller, "What do cats eat?", out, 200, time.perf_counter())
    (event,) = events._writer.events  # type: ignore[attr-defined]
    assert event.endpoint == "rag" and event.retrieval[0].chunk_id == "c1" and event.prompt == "What do cats eat?"
    back = parse_entry({b"event": orjson.dumps(event.wire())})
    assert back.model_dump(exclude={"text_withheld"}) == event.model_dump()


def test_newer_fields_are_ignored_and_unknown_versions_refused() -> None:
    """A newer producer's extra field does not break this reader; a version it does not know is refused."""
    base = orjson.loads(v1_lines()[0])
    assert parse_trace_event(orjson.dumps(base | {"added_in_v1_9": 1}), TraceEvent).request_id == "req_gw_chat"
    for bad, reason in (
        (base | {"schema": 2}, "unsupported event schema 2"),
        (base | {"schema": [1]}, "unsupported event schema"),
        (base | {"status": "x"}, "status"),
        (base | {"request_id": ""}, "request_id"),
        (base | {"withheld": ["everything"]}, "withheld"),
    ):
        with pytest.raises(InvalidTraceEvent, match=reason):
            parse_trace_event(orjson.dumps(bad), TraceEvent)
        with pytest.raises(InvalidEvent, match=reason):
            parse_entry({b"event": orjson.dumps(bad)})
