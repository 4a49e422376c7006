"""Append-only, tamper-evident audit log: each entry carries the hash of the one before it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import Connection, func, select

from services.registry.store import Store, audit_log

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON of every field except the hash itself."""
    canonical = {
        "seq": entry["seq"],
        "ts": f"{entry['ts']:.6f}",
        "actor": entry["actor"],
        "action": entry["action"],
        "object_type": entry["object_type"],
        "object_id": entry["object_id"],
        "reason": entry["reason"],
        "before": entry["before"],
        "after": entry["after"],
        "prev_hash": entry["prev_hash"],
    }
    raw = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class AuditLog:
    """Writes happen inside the caller's transaction, so a change and its audit entry commit together."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self,
        conn: Connection,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str,
        reason: str | None = None,
        before: Any = None,
        after: Any = None,
    ) -> dict[str, Any]:
        """Append one entry chained to the last one; returns the stored entry."""
        last = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
        entry = {
            "seq": (last.seq + 1) if last else 1,
            "ts": round(time.time(), 6),
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "reason": reason,
            "before": _jsonable(before),
            "after": _jsonable(after),
            "prev_hash": last.hash if last else GENESIS,
        }
        entry["hash"] = entry_hash(entry)
        conn.execute(audit_log.insert().values(**entry))
        return entry

    def query(
        self,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Entries in chain order, filtered by object, actor and time window."""
        q = select(audit_log).where(audit_log.c.seq > after_seq)
        if object_type:
            q = q.where(audit_log.c.object_type == object_type)
        if object_id:
            # "model/smollm2" matches the model and all its versions ("model/smollm2/3"). A substring comparison,
            # not LIKE: names may hold `_` or `%`, and SQLite's LIKE ignores case.
            prefix = object_id + "/"
            q = q.where(
                (audit_log.c.object_id == object_id) | (func.substr(audit_log.c.object_id, 1, len(prefix)) == prefix)
            )
        if actor:
            q = q.where(audit_log.c.actor == actor)
        if since is not None:
            q = q.where(audit_log.c.ts >= since)
        if until is not None:
            q = q.where(audit_log.c.ts < until)
        with self.store.read() as conn:
            rows = conn.execute(q.order_by(audit_log.c.seq).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def verify(self) -> dict[str, Any]:
        """Recompute the whole chain; report the first entry whose hash or link does not match."""
        prev = GENESIS
        count = 0
        with self.store.read() as conn:
            for row in conn.execute(select(audit_log).order_by(audit_log.c.seq)).mappings():
                count += 1
                entry = dict(row)
                if entry["seq"] != count:
                    return {"ok": False, "entries": count, "first_bad_seq": entry["seq"], "problem": "gap in sequence"}
                if entry["prev_hash"] != prev:
                    return {"ok": False, "entries": count, "first_bad_seq": entry["seq"], "problem": "broken link"}
                if entry_hash(entry) != entry["hash"]:
                    return {"ok": False, "entries": count, "first_bad_seq": entry["seq"], "problem": "hash mismatch"}
                prev = entry["hash"]
        return {"ok": True, "entries": count, "first_bad_seq": None, "problem": None, "head_hash": prev}


def _jsonable(value: Any) -> Any:
    # Round-trip through JSON so the hashed form equals what the database gives back later.
    return None if value is None else json.loads(json.dumps(value, default=str))
