"""Reads and writes behind the HTTP API: feedback, request and feedback queries, drift windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.feedback.rules import priority
from services.feedback.store.db import Database, Row


class NotFound(LookupError):
    """The row does not exist, or belongs to another team (the two are not told apart)."""


class Conflict(RuntimeError):
    """The row is in a state that forbids the change."""


class Ambiguous(LookupError):
    """The admin named a request id that several teams used; the team must be given."""


# Requests are the team's: every join from feedback or label items to requests matches both columns.
SAME_REQUEST = "r.team = {a}.team AND r.request_id = {a}.request_id"


@dataclass(frozen=True)
class RequestFilter:
    """Filters of GET /v1/requests and GET /v1/feedback; team None means every team (admin)."""

    team: str | None = None
    since: float | None = None
    until: float | None = None
    model: str | None = None
    endpoint: str | None = None
    rating_min: int | None = None
    rating_max: int | None = None
    thumbs: str | None = None
    category: str | None = None
    has_feedback: bool | None = None
    limit: int = 50
    offset: int = 0


def _loads(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def request_out(row: Row) -> Row:
    """A requests row as the API shows it (JSON columns decoded, flags as booleans)."""
    out = dict(row)
    for key in ("guardrails", "retrieval", "prompt"):
        out[key] = _loads(out.get(key))
    for key in ("stream", "guardrail_flagged", "refusal"):
        out[key] = bool(out[key])
    out.pop("stream_id", None)
    return out


def feedback_out(row: Row) -> Row:
    """A feedback row as the API shows it."""
    out = dict(row)
    out["categories"] = _loads(out["categories"]) or []
    return out


def _feedback_conditions(f: RequestFilter, alias: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.rating_min is not None:
        where.append(f"{alias}.rating >= ?")
        params.append(f.rating_min)
    if f.rating_max is not None:
        where.append(f"{alias}.rating <= ?")
        params.append(f.rating_max)
    if f.thumbs is not None:
        where.append(f"{alias}.thumbs = ?")
        params.append(f.thumbs)
    if f.category is not None:
        where.append(f"{alias}.categories LIKE ?")
        params.append(f'%"{f.category}"%')
    return where, params


def _request_conditions(f: RequestFilter, alias: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("team", f.team), ("model", f.model), ("endpoint", f.endpoint)):
        if value is not None:
            where.append(f"{alias}.{column} = ?")
            params.append(value)
    return where, params


def list_requests(db: Database, f: RequestFilter) -> list[Row]:
    """Requests matching the filter, newest first; rating filters match requests with such feedback."""
    where, params = _request_conditions(f, "r")
    if f.since is not None:
        where.append("r.ts >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append("r.ts < ?")
        params.append(f.until)
    fb_where, fb_params = _feedback_conditions(f, "f")
    if fb_where or f.has_feedback:
        inner = " AND ".join([SAME_REQUEST.format(a="f"), *fb_where])
        where.append(f"EXISTS (SELECT 1 FROM feedback f WHERE {inner})")
        params.extend(fb_params)
    elif f.has_feedback is False:
        where.append(f"NOT EXISTS (SELECT 1 FROM feedback f WHERE {SAME_REQUEST.format(a='f')})")
    sql = "SELECT r.* FROM requests r"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY r.ts DESC, r.team, r.request_id LIMIT ? OFFSET ?"
    return [request_out(r) for r in db.query(sql, [*params, f.limit, f.offset])]


def list_feedback(db: Database, f: RequestFilter) -> list[Row]:
    """Feedback matching the filter (time is the feedback's creation time), newest first, with its model."""
    where, params = _request_conditions(f, "r")
    where = [w.replace("r.team", "f.team") for w in where]
    if f.since is not None:
        where.append("f.created_at >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append("f.created_at < ?")
        params.append(f.until)
    fb_where, fb_params = _feedback_conditions(f, "f")
    where.extend(fb_where)
    params.extend(fb_params)
    sql = (
        "SELECT f.*, r.model AS model, r.endpoint AS endpoint "
        f"FROM feedback f JOIN requests r ON {SAME_REQUEST.format(a='f')}"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY f.created_at DESC, f.id DESC LIMIT ? OFFSET ?"
    return [feedback_out(r) for r in db.query(sql, [*params, f.limit, f.offset])]


def owner_of(db: Database, request_id: str, team: str | None) -> str:
    """The team owning the request: `team` itself when it has one by that id; for the admin (None), the only
    team that used the id. NotFound when absent (or another team's), Ambiguous when several teams used it."""
    if team is not None:
        if not db.query("SELECT 1 FROM requests WHERE team = ? AND request_id = ?", [team, request_id]):
            raise NotFound(request_id)
        return team
    rows = db.query("SELECT team FROM requests WHERE request_id = ? ORDER BY team LIMIT 2", [request_id])
    if not rows:
        raise NotFound(request_id)
    if len(rows) > 1:
        raise Ambiguous(request_id)
    return str(rows[0]["team"])


def get_request(db: Database, request_id: str, team: str | None) -> Row:
    """One request with its feedback; NotFound when absent or owned by another team."""
    owner = owner_of(db, request_id, team)
    key = [owner, request_id]
    rows = db.query("SELECT * FROM requests WHERE team = ? AND request_id = ?", key)
    out = request_out(rows[0])
    fb = db.query("SELECT * FROM feedback WHERE team = ? AND request_id = ? ORDER BY created_at, id", key)
    out["feedback"] = [feedback_out(r) for r in fb]
    item = db.query(
        "SELECT id, status, reasons, label, corrected_answer FROM label_items WHERE team = ? AND request_id = ?", key
    )
    out["label_item"] = (item[0] | {"reasons": orjson.loads(item[0]["reasons"])}) if item else None
    return out


def _queue_negative(db: Database, request_id: str, team: str, now: float) -> None:
    """Add the negative_feedback reason to the request's label item (creating or reopening it)."""
    rows = db.query("SELECT id, reasons, status FROM label_items WHERE team = ? AND request_id = ?", [team, request_id])
    if not rows:
        reasons = ["negative_feedback"]
        db.execute(
            "INSERT INTO label_items (request_id, team, created_at, reasons, priority, status) "
            "VALUES (?, ?, ?, ?, ?, 'pending') ON CONFLICT (team, request_id) DO NOTHING",
            [request_id, team, now, orjson.dumps(reasons).decode(), priority(reasons)],
        )
        return
    item = rows[0]
    reasons = orjson.loads(item["reasons"])
    if "negative_feedback" not in reasons:
        reasons.append("negative_feedback")
    status = "pending" if item["status"] == "skipped" else item["status"]  # new evidence reopens a skipped item
    db.execute(
        "UPDATE label_items SET reasons = ?, priority = ?, status = ? WHERE id = ?",
        [orjson.dumps(reasons).decode(), priority(reasons), status, item["id"]],
    )


def add_feedback(db: Database, team: str | None, key_id: str | None, fb: dict[str, Any], now: float) -> Row:
    """Store one feedback on a request the caller's team owns; negative feedback queues it for labeling."""
    with db.transaction():
        owner = owner_of(db, fb["request_id"], team)
        returned = db.query(
            "INSERT INTO feedback (request_id, team, key_id, created_at, thumbs, rating, score, categories, comment, "
            "corrected_answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            [
                fb["request_id"],
                owner,
                key_id,
                now,
                fb.get("thumbs"),
                fb.get("rating"),
                fb["score"],
                orjson.dumps(fb.get("categories") or []).decode(),
                fb.get("comment"),
                fb.get("corrected_answer"),
            ],
        )
        if fb["score"] <= 0.25:  # thumbs down, or a rating of 1 or 2
            _queue_negative(db, fb["request_id"], owner, now)
    return feedback_out(returned[0])


def window_stats(db: Database, team: str | None, start: float, end: float, samples: int) -> Row:
    """Rates over a whole time window, plus a random sample of its requests for distributions."""
    cond = "ts >= ? AND ts < ?"
    params: list[Any] = [start, end]
    if team is not None:
        cond += " AND team = ?"
        params.append(team)
    agg = db.query(
        f"SELECT COUNT(*) AS n, AVG(refusal) AS refusal_rate, "
        f"AVG(CASE WHEN status >= 400 THEN 1.0 ELSE 0.0 END) AS error_rate FROM requests WHERE {cond}",
        params,
    )[0]
    # ORDER BY random() scans the window once (index on ts) and keeps the top N: fine up to a few million rows;
    # beyond that, sample by time buckets or keep a reservoir at ingestion.
    sample = db.query(
        f"SELECT prompt, prompt_chars, response_chars, max_retrieval_score, status FROM requests WHERE {cond} "
        "ORDER BY random() LIMIT ?",
        [*params, samples],
    )
    fcond = cond.replace("ts ", "created_at ")
    rating = db.query(f"SELECT COUNT(*) AS n, AVG(score) AS mean FROM feedback WHERE {fcond}", params)[0]
    return {"aggregate": agg, "sample": sample, "rating": rating}
