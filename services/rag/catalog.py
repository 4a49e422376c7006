"""Records of collections, documents and ingestion runs, kept as payload-only points in Qdrant.

Keeping them in Qdrant (not a local file) is what lets several rag replicas share one Qdrant server.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from services.rag.store import VectorStore, physical_name, point_id


def now() -> float:
    """Wall-clock seconds (a function so records share one clock)."""
    return time.time()


class Catalog:
    """CRUD over catalog records; every record carries its team, so lookups are always team-scoped."""

    def __init__(self, store: VectorStore, public_team: str) -> None:
        self.store = store
        self.public_team = public_team

    @staticmethod
    def _coll_id(team: str, name: str) -> str:
        return point_id("collection", team, name)

    @staticmethod
    def _doc_id(team: str, collection: str, doc_id: str) -> str:
        return point_id("document", team, collection, doc_id)

    # ---- collections -------------------------------------------------------------------------
    def create_collection(self, team: str, name: str, description: str, dimension: int) -> dict[str, Any]:
        """Create the record and the Qdrant collection; the caller checks it does not exist yet."""
        record: dict[str, Any] = {
            "kind": "collection",
            "team": team,
            "name": name,
            "description": description,
            "qdrant_collection": physical_name(team, name),
            "created_at": now(),
            "data_version": None,
            "documents": 0,
            "chunks": 0,
            "last_ingest_run": None,
        }
        self.store.create_vectors(record["qdrant_collection"], dimension)
        self.store.put_record(self._coll_id(team, name), record)
        return record

    def get_collection(self, team: str, name: str, readable_public: bool = False) -> dict[str, Any] | None:
        """The team's own collection, else (for reads) the public team's collection of that name."""
        record = self.store.get_record(self._coll_id(team, name))
        if record is None and readable_public and team != self.public_team:
            record = self.store.get_record(self._coll_id(self.public_team, name))
        return record

    def list_collections(self, team: str) -> list[dict[str, Any]]:
        """The team's collections, then the public ones it may read."""
        own = self.store.find_records(kind="collection", team=team)
        public = [] if team == self.public_team else self.store.find_records(kind="collection", team=self.public_team)
        return sorted(own, key=lambda r: r["name"]) + sorted(public, key=lambda r: r["name"])

    def save_collection(self, record: dict[str, Any]) -> None:
        """Write back a changed collection record."""
        self.store.put_record(self._coll_id(record["team"], record["name"]), record)

    def delete_collection(self, record: dict[str, Any]) -> None:
        """Drop the collection record, the document records and the chunks (in that order: an ingestion job
        running meanwhile sees the collection gone before its writes start failing)."""
        team, name = record["team"], record["name"]
        self.store.delete_records([self._coll_id(team, name)])
        docs = self.store.find_records(kind="document", team=team, collection=name)
        self.store.delete_records([self._doc_id(team, name, d["doc_id"]) for d in docs])
        self.store.drop_vectors(record["qdrant_collection"])

    # ---- documents ---------------------------------------------------------------------------
    def get_document(self, team: str, collection: str, doc_id: str) -> dict[str, Any] | None:
        """One document record."""
        return self.store.get_record(self._doc_id(team, collection, doc_id))

    def list_documents(self, team: str, collection: str) -> list[dict[str, Any]]:
        """All document records of a collection, by id."""
        docs = self.store.find_records(kind="document", team=team, collection=collection)
        return sorted(docs, key=lambda d: d["doc_id"])

    def put_document(self, record: dict[str, Any]) -> None:
        """Insert or replace a document record."""
        self.store.put_record(self._doc_id(record["team"], record["collection"], record["doc_id"]), record)

    def delete_document(self, team: str, collection: str, doc_id: str) -> None:
        """Remove a document record."""
        self.store.delete_records([self._doc_id(team, collection, doc_id)])

    def refresh_stats(self, record: dict[str, Any]) -> dict[str, Any]:
        """Recount documents and chunks and recompute the data version (hash of every indexed doc's hash)."""
        docs = [d for d in self.list_documents(record["team"], record["name"]) if d.get("status") == "indexed"]
        digest = hashlib.sha256()
        for doc in docs:
            digest.update(f"{doc['doc_id']}\x1f{doc['content_hash']}\n".encode())
        record["documents"] = len(docs)
        record["chunks"] = sum(int(d.get("chunks", 0)) for d in docs)
        # The full hash names the data in the registry (a dataset version's digest); answers show its first 16.
        record["data_digest"] = digest.hexdigest() if docs else None
        record["data_version"] = record["data_digest"][:16] if docs else None
        self.save_collection(record)
        return record

    # ---- ingestion runs ----------------------------------------------------------------------
    def put_run(self, run: dict[str, Any]) -> None:
        """Record one ingestion run (parameters, counts, input hash)."""
        self.store.put_record(point_id("ingest_run", run["run_id"]), {"kind": "ingest_run", **run})

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One ingestion run record."""
        return self.store.get_record(point_id("ingest_run", run_id))
