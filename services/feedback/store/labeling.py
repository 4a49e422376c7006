"""The labeling queue (active learning) and the rows a dataset export reads."""

from __future__ import annotations

from typing import Any

import orjson

from services.feedback.store.db import Database, Row
from services.feedback.store.queries import SAME_REQUEST, Conflict, NotFound, request_out

_ITEM_COLUMNS = (
    "li.id, li.request_id, li.team, li.created_at, li.reasons, li.priority, li.status, li.taken_by, li.lease_until, "
    "li.label, li.corrected_answer, li.comment, li.labeled_by, li.labeled_at"
)


def item_out(row: Row) -> Row:
    """A label item as the API shows it."""
    out = {k: row[k] for k in row if not k.startswith("r_")}
    out["reasons"] = orjson.loads(out["reasons"])
    return out


def _team_cond(team: str | None, params: list[Any]) -> str:
    if team is None:
        return ""
    params.append(team)
    return " AND li.team = ?"


def next_item(db: Database, team: str | None, taker: str, now: float, lease_s: float) -> Row | None:
    """Reserve the most urgent open item (pending, or taken with an expired lease) for `taker`."""
    params: list[Any] = [now]
    sql = (
        f"SELECT {_ITEM_COLUMNS} FROM label_items li WHERE (li.status = 'pending' OR "
        f"(li.status = 'taken' AND li.lease_until < ?)){_team_cond(team, params)} "
        "ORDER BY li.priority DESC, li.created_at, li.id LIMIT 1"
    )
    if db.dialect == "postgresql":
        sql += " FOR UPDATE SKIP LOCKED"  # replicas never hand out the same item
    with db.transaction():
        rows = db.query(sql, params)
        if not rows:
            return None
        item = rows[0]
        db.execute(
            "UPDATE label_items SET status = 'taken', taken_by = ?, lease_until = ? WHERE id = ?",
            [taker, now + lease_s, item["id"]],
        )
        item.update(status="taken", taken_by=taker, lease_until=now + lease_s)
        request = db.query(
            "SELECT * FROM requests WHERE team = ? AND request_id = ?", [item["team"], item["request_id"]]
        )
    out = item_out(item)
    out["request"] = request_out(request[0]) if request else None
    return out


def _get_item(db: Database, item_id: int, team: str | None) -> Row:
    params: list[Any] = [item_id]
    rows = db.query(f"SELECT {_ITEM_COLUMNS} FROM label_items li WHERE li.id = ?{_team_cond(team, params)}", params)
    if not rows:
        raise NotFound(str(item_id))
    return rows[0]


def label_item(db: Database, item_id: int, team: str | None, label: dict[str, Any], by: str, now: float) -> Row:
    """Record a label (and optional corrected answer) on an open item."""
    with db.transaction():
        item = _get_item(db, item_id, team)
        if item["status"] == "labeled":
            raise Conflict("item is already labeled")
        db.execute(
            "UPDATE label_items SET status = 'labeled', label = ?, corrected_answer = ?, comment = ?, labeled_by = ?, "
            "labeled_at = ?, lease_until = NULL WHERE id = ?",
            [label["label"], label.get("corrected_answer"), label.get("comment"), by, now, item_id],
        )
        return item_out(_get_item(db, item_id, team))


def skip_item(db: Database, item_id: int, team: str | None, by: str) -> Row:
    """Take an open item out of the queue without a label."""
    with db.transaction():
        item = _get_item(db, item_id, team)
        if item["status"] == "labeled":
            raise Conflict("item is already labeled")
        db.execute(
            "UPDATE label_items SET status = 'skipped', taken_by = ?, lease_until = NULL WHERE id = ?", [by, item_id]
        )
        return item_out(_get_item(db, item_id, team))


def queue_counts(db: Database, team: str | None) -> dict[str, int]:
    """Items per status."""
    params: list[Any] = []
    rows = db.query(
        f"SELECT li.status AS status, COUNT(*) AS n FROM label_items li WHERE 1 = 1{_team_cond(team, params)} "
        "GROUP BY li.status",
        params,
    )
    return {r["status"]: int(r["n"]) for r in rows}


def export_candidates(db: Database, where: list[str], params: list[Any], min_rating: int) -> list[Row]:
    """Labeled items and positively rated (or corrected) feedback, with their requests, oldest first.

    `where` holds conditions on the requests table `r`; each row carries `answer` and `source`.
    """
    cond = "".join(f" AND {w}" for w in where)
    labeled = db.query(
        "SELECT r.*, li.corrected_answer AS corrected, li.label AS label, 'label' AS source, li.labeled_at AS at "
        f"FROM label_items li JOIN requests r ON {SAME_REQUEST.format(a='li')} WHERE li.status = 'labeled'{cond}",
        params,
    )
    rated = db.query(
        "SELECT r.*, f.corrected_answer AS corrected, NULL AS label, 'feedback' AS source, f.created_at AS at "
        f"FROM feedback f JOIN requests r ON {SAME_REQUEST.format(a='f')} "
        f"WHERE (f.thumbs = 'up' OR f.rating >= ? OR f.corrected_answer IS NOT NULL){cond}",
        [min_rating, *params],
    )
    return sorted([*labeled, *rated], key=lambda r: (0 if r["source"] == "label" else 1, r["at"]))


def add_dataset(db: Database, record: dict[str, Any]) -> Row:
    """Record an exported dataset as the next version of its name in its scope (the team, or '' for all teams)."""
    with db.transaction():
        if db.dialect == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(4005)")  # versions stay gap-free across replicas
        version = db.query(
            "SELECT COALESCE(MAX(version), 0) + 1 AS v FROM datasets WHERE scope = ? AND name = ?",
            [record["scope"], record["name"]],
        )
        record = record | {"version": int(version[0]["v"])}
        cols = ", ".join(record)
        db.execute(f"INSERT INTO datasets ({cols}) VALUES ({', '.join('?' * len(record))})", list(record.values()))
    return record


def set_dataset_registration(
    db: Database, scope: str, name: str, version: int, registered_in: str, ref: str | None
) -> None:
    """Remember where the dataset version was registered."""
    with db.transaction():
        db.execute(
            "UPDATE datasets SET registered_in = ?, registry_ref = ? WHERE scope = ? AND name = ? AND version = ?",
            [registered_in, ref, scope, name, version],
        )
