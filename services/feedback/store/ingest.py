"""Writing trace events: one transaction per batch, idempotent by (team, request id)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from services.feedback.events import TraceEvent, is_guardrail_flagged, prompt_text
from services.feedback.rules import is_refusal, max_retrieval_score, priority
from services.feedback.store.db import Database

_COLUMNS = (
    "request_id, stream_id, trace_id, ts, ingested_at, team, project, key_id, model, model_version, deployment, "
    "prompt_version, endpoint, status, error_code, prompt_tokens, completion_tokens, cost_usd, latency_ms, ttft_ms, "
    "stream, guardrails, retrieval, prompt, response, mean_logprob, prompt_chars, response_chars, "
    "max_retrieval_score, guardrail_flagged, refusal, text_withheld"
)

_INSERT_LABEL = (
    "INSERT INTO label_items (request_id, team, created_at, reasons, priority, status) "
    "VALUES (?, ?, ?, ?, ?, 'pending') "
    "ON CONFLICT (team, request_id) DO NOTHING"
)
_INSERT_DEAD = (
    "INSERT INTO dead_letters (stream_id, received_at, reason, raw) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


@dataclass
class IngestResult:
    """What one batch did: events newly stored, duplicates skipped, entries dead-lettered."""

    stored: list[TraceEvent] = field(default_factory=list)
    duplicates: int = 0
    invalid: int = 0


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _row(stream_id: str, ev: TraceEvent, now: float) -> tuple[object, ...]:
    return (
        ev.request_id,
        stream_id,
        ev.trace_id,
        ev.ts,
        now,
        ev.team,
        ev.project,
        ev.key_id,
        ev.model,
        ev.model_version,
        ev.deployment,
        ev.prompt_version,
        ev.endpoint,
        ev.status,
        ev.error_code,
        ev.prompt_tokens,
        ev.completion_tokens,
        ev.cost_usd,
        ev.latency_ms,
        ev.ttft_ms,
        int(ev.stream),
        _json([g.model_dump() for g in ev.guardrails]),
        _json([c.model_dump() for c in ev.retrieval]),
        None if ev.prompt is None else _json(ev.prompt),
        ev.response,
        ev.mean_logprob,
        len(prompt_text(ev.prompt)),
        len(ev.response or ""),
        max_retrieval_score(ev),
        int(is_guardrail_flagged(ev)),
        int(is_refusal(ev.response)),
        ev.text_withheld,
    )


def _existing_keys(db: Database, ids: Sequence[str]) -> set[tuple[str, str]]:
    """(team, request id) of stored requests among these ids (any team: the caller compares pairs)."""
    found: set[tuple[str, str]] = set()
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.query(f"SELECT team, request_id FROM requests WHERE request_id IN ({marks})", chunk)
        found.update((r["team"], r["request_id"]) for r in rows)
    return found


def ingest_batch(
    db: Database,
    events: Sequence[tuple[str, TraceEvent]],
    invalid: Sequence[tuple[str, str, str | None]],
    reasons_for: Callable[[TraceEvent], list[str]],
    now: float,
) -> IngestResult:
    """Store a batch of (stream id, event) and dead letters (stream id, reason, raw) in one transaction."""
    result = IngestResult(invalid=len(invalid))
    with db.transaction():
        existing = _existing_keys(db, list({ev.request_id for _, ev in events}))
        rows, labels, seen = [], [], set(existing)
        for stream_id, ev in events:
            # A request is the team's: another team reusing the same x-request-id is a different request.
            key = (ev.team, ev.request_id)
            if key in seen:  # stored before (redelivery) or twice in this batch
                result.duplicates += 1
                continue
            seen.add(key)
            rows.append(_row(stream_id, ev, now))
            result.stored.append(ev)
            reasons = reasons_for(ev)
            if reasons:
                labels.append((ev.request_id, ev.team, now, _json(reasons), priority(reasons)))
        if rows:
            db.insert_ignoring_conflicts("requests", _COLUMNS, rows)
        if labels:
            db.executemany(_INSERT_LABEL, labels)
        if invalid:
            db.executemany(_INSERT_DEAD, [(sid, now, reason, raw) for sid, reason, raw in invalid])
    return result
