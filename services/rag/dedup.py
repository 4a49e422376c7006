"""Dedup across ingestion runs: the same normalised text under a new id is not indexed a second time.

Inside one job the pipeline already drops a repeated content hash. Across jobs it asks the catalog whether an
indexed document of the same collection has the same hash (the hash of the normalised text, `extract.content_hash`)
under another id. What happens then is the setting `RAG_DEDUP`:

- `skip`: the new id is not indexed; its result says `duplicate` and `duplicate_of`;
- `link`: the same, and the new id also gets a document record (`status: duplicate`, `duplicate_of`) so
  `GET .../documents/{id}` answers for it; its passages are the existing chunks (they carry the first id);
- `off`: indexed again (the old behaviour: two copies, both retrieved).

A document that was indexed before and now has the text of another one loses its old version, so the index never
keeps a version the client has replaced. Deleting the original leaves a linked id without chunks.
"""

from __future__ import annotations

from typing import Any, Literal

from services.rag.catalog import Catalog, now

DedupMode = Literal["skip", "link", "off"]


def find_indexed(catalog: Catalog, team: str, collection: str, digest: str, doc_id: str) -> dict[str, Any] | None:
    """An indexed document of the collection with this content hash under another id (the oldest one)."""
    found = catalog.store.find_records(kind="document", team=team, collection=collection, content_hash=digest)
    found = [r for r in found if r.get("status") == "indexed" and r.get("doc_id") != doc_id]
    return min(found, key=lambda r: (r.get("updated_at") or 0, r["doc_id"])) if found else None


def resolve(
    catalog: Catalog,
    collection: dict[str, Any],
    mode: DedupMode,
    doc: dict[str, Any],
    existing: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The document's result when it duplicates an indexed one (after recording it as `mode` says); else None.

    `doc` has the new document's `doc_id`, `hash`, `title`, `source` and `metadata`; `existing` is its own
    catalog record, if any."""
    if mode == "off":
        return None
    team, name = collection["team"], collection["name"]
    original = find_indexed(catalog, team, name, doc["hash"], doc["doc_id"])
    if original is None:
        return None
    if existing is not None and existing.get("status") == "indexed":
        # This id held other text before: that version is replaced by "same as <original>", so it goes.
        catalog.store.delete_chunks(collection["qdrant_collection"], doc["doc_id"])
        if mode == "skip":
            catalog.delete_document(team, name, doc["doc_id"])
    if mode == "link":
        catalog.put_document(
            {
                "kind": "document",
                "team": team,
                "collection": name,
                "doc_id": doc["doc_id"],
                "title": doc["title"],
                "status": "duplicate",
                "duplicate_of": original["doc_id"],
                "content_hash": doc["hash"],
                "chunks": 0,
                "source": doc["source"],
                "metadata": doc["metadata"],
                "updated_at": now(),
                "error": None,
            }
        )
    return {
        "doc_id": doc["doc_id"],
        "status": "duplicate",
        "duplicate_of": original["doc_id"],
        "linked": mode == "link",
        "chunks": 0,
    }
