"""Append-only, tamper-evident audit log: each entry carries the hash of the one before it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import Connection, func, select

from services.registry.store import Store, audit_head, audit_log

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

    def __init__(self, store: Store, key: str | None = None) -> None:
        self.store = store
        self.key = key.encode() if key else None
        self._anchor_existing()

    def _mac(self, seq: int, digest: str) -> str | None:
        return hmac.new(self.key, f"{seq}:{digest}".encode(), hashlib.sha256).hexdigest() if self.key else None

    def _set_head(self, conn: Connection, seq: int, digest: str) -> None:
        values = {"seq": seq, "hash": digest, "mac": self._mac(seq, digest)}
        if conn.execute(audit_head.update().where(audit_head.c.id == 1).values(**values)).rowcount == 0:
            conn.execute(audit_head.insert().values(id=1, **values))

    def _anchor_existing(self) -> None:
        """A store written before the anchor existed gets one at its current head (trusting it this once);
        a configured key signs the head the first time it is seen without a signature."""
        with self.store.transaction() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
            last = conn.execute(
                select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
            ).first()
            if head is None and last is not None:
                self._set_head(conn, last.seq, last.hash)
            elif head is not None and self.key and head.mac is None:
                self._set_head(conn, head.seq, head.hash)

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
        self._set_head(conn, entry["seq"], entry["hash"])
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
        """Recompute the whole chain, then compare its end with the anchored head (truncation, forged head)."""
        result = self._verify_chain()
        with self.store.read() as conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == 1)).first()
        result["anchor"] = {"seq": head.seq, "hash": head.hash} if head else None
        if not result["ok"]:
            return result
        problem = None
        if head is None:
            problem = "anchor missing" if result["entries"] else None
        elif self.key and not hmac.compare_digest(head.mac or "", self._mac(head.seq, head.hash) or ""):
            problem = "anchor signature mismatch"
        elif head.seq > result["entries"]:
            problem = f"log truncated: the anchored head is entry {head.seq}, the log ends at {result['entries']}"
        elif head.seq < result["entries"] or head.hash != result.get("head_hash"):
            problem = "the log's head does not match the anchor"
        if problem:
            return result | {"ok": False, "first_bad_seq": min(head.seq if head else 1, result["entries"] + 1),
                             "problem": problem}  # fmt: skip
        return result

    def get(self, seq: int) -> dict[str, Any] | None:
        """One entry by sequence number."""
        with self.store.read() as conn:
            row = conn.execute(select(audit_log).where(audit_log.c.seq == seq)).mappings().first()
        return dict(row) if row else None

    def for_object(self, object_type: str, name: str) -> list[dict[str, Any]]:
        """Every entry about one model or prompt and its versions, in chain order (no paging)."""
        prefix = f"{object_type}/{name}"
        with self.store.read() as conn:
            rows = conn.execute(
                select(audit_log)
                .where(
                    (audit_log.c.object_id == prefix)
                    | (func.substr(audit_log.c.object_id, 1, len(prefix) + 1) == prefix + "/")
                )
                .order_by(audit_log.c.seq)
            ).mappings()
            return [dict(r) for r in rows]

    def _verify_chain(self) -> dict[str, Any]:
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
