"""Qdrant access: one code path for local mode (on-disk) and a Qdrant server, plus the document catalog.

Tenancy is physical: each team's collection is its own Qdrant collection (name derived from a hash of the
team), so a query can never reach another team's points and needs no tenant filter on the hot path.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.rag import local_dense, local_sparse
from services.rag.fusion import RRF_K, qdrant_k
from services.rag.sparse import SparseVec

Strategy = Literal["dense", "sparse", "hybrid"]
CATALOG = "rag_catalog"
_NS = uuid.UUID("7b0d5a52-4f5e-4c1e-9a53-6f3b8d8c2a10")
_BUILTIN_FIELDS = {"doc_id", "title", "section", "source", "content_hash", "chunk_index"}


class StoreUnavailable(Exception):
    """Qdrant cannot be reached or refused the call: the service answers 503."""


def point_id(*parts: str) -> str:
    """Deterministic point id (uuid5), so re-ingesting a document overwrites instead of duplicating."""
    return str(uuid.uuid5(_NS, "\x1f".join(parts)))


def physical_name(team: str, collection: str) -> str:
    """The Qdrant collection holding a team's logical collection."""
    return f"rag_{hashlib.sha256(team.encode()).hexdigest()[:12]}_{collection}"


def _equals(path: str, value: Any) -> qm.Condition:
    """One equality condition. Qdrant matches only str, int and bool by value: a float is a one-point range."""
    if isinstance(value, float):
        return qm.FieldCondition(key=path, range=qm.Range(gte=value, lte=value))
    return qm.FieldCondition(key=path, match=qm.MatchValue(value=value))


def _any_of(path: str, values: list[Any]) -> qm.Condition:
    """An any-of condition. Qdrant's MatchAny takes a list of strings or of integers only; a list of floats,
    booleans or mixed types (the API allows them) is the same test spelt as `should` over equalities."""
    kinds = {type(v) for v in values}
    if kinds <= {str} or kinds <= {int}:
        return qm.FieldCondition(key=path, match=qm.MatchAny(any=values))
    return qm.Filter(should=[_equals(path, v) for v in values])


def build_filter(filters: dict[str, Any] | None, extra: Sequence[qm.Condition] = ()) -> qm.Filter | None:
    """Equality (scalar) or any-of (list) conditions; user metadata lives under `meta.`."""
    must: list[qm.Condition] = list(extra)
    for key, value in (filters or {}).items():
        path = key if key in _BUILTIN_FIELDS or key.startswith("meta.") else f"meta.{key}"
        must.append(_any_of(path, value) if isinstance(value, list) else _equals(path, value))
    return qm.Filter(must=must) if must else None


def _refuse_if_locked(lock_path: Path) -> None:
    """Raise when another process holds local mode's folder lock. qdrant-client finds out too, but leaks the lock
    file's handle each time it does, and the store retries on every call until the folder is free."""
    if not lock_path.exists():
        return
    with open(lock_path, "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                "the folder is in use by another process (a second RAG on the same data dir?); "
                "replicas need a Qdrant server (RAG_QDRANT_URL)"
            ) from None
        fcntl.flock(lock, fcntl.LOCK_UN)


class VectorStore:
    """Thin wrapper over QdrantClient; every call maps transport failures onto StoreUnavailable."""

    def __init__(self, url: str | None, path: Path, api_key: str | None = None, timeout_s: float = 5.0) -> None:
        self.mode = "server" if url else "local"
        self.location = url or str(path)
        self._client: QdrantClient | None = None
        if url:
            # No version probe at start: a Qdrant that is down must not stop the service from starting.
            self._client = QdrantClient(
                url=url, api_key=api_key, timeout=int(max(1, timeout_s)), check_compatibility=False
            )
        else:
            local_sparse.install()  # local mode's sparse scoring is a Python loop; see local_sparse.py
            local_dense.install()  # and its dense scoring converts the matrix to float64 per query; local_dense.py
        self._path = path
        # Local mode is plain Python state shared by request threads; a server handles its own concurrency.
        self._lock: threading.RLock | None = threading.RLock() if not url else None
        self._catalog_ready = False
        if not url:
            # The folder may be locked by another process (a second RAG on the same data dir) or not writable:
            # start anyway, not ready, and open it on a later call once it can be (_call).
            with suppress(StoreUnavailable):
                self._client = self._open_local()

    def _open_local(self) -> QdrantClient:
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            _refuse_if_locked(self._path / ".lock")
            return QdrantClient(path=str(self._path))
        except (OSError, RuntimeError) as exc:  # RuntimeError: "already accessed by another instance"
            raise StoreUnavailable(f"Qdrant (local at {self.location}) cannot be opened: {exc}") from exc

    @contextmanager
    def _call(self) -> Iterator[QdrantClient]:
        try:
            if self._lock is None:
                assert self._client is not None  # server mode: made in __init__
                yield self._client
            else:
                with self._lock:
                    if self._client is None:
                        self._client = self._open_local()
                    yield self._client
        except (ResponseHandlingException, UnexpectedResponse, ConnectionError, OSError, RuntimeError) as exc:
            raise StoreUnavailable(f"Qdrant ({self.mode} at {self.location}) failed: {exc}") from exc

    def close(self) -> None:
        """Release the local-mode lock on the data folder."""
        if self._client is not None:
            self._client.close()

    def ping(self) -> bool:
        """True when Qdrant answers."""
        try:
            with self._call() as c:
                c.get_collections()
            return True
        except StoreUnavailable:
            return False

    # ---- collections -------------------------------------------------------------------------
    def ensure_catalog(self) -> None:
        """Create the catalog collection (payload-only records of collections and documents); cached once done."""
        if self._catalog_ready:
            return
        with self._call() as c:
            if not c.collection_exists(CATALOG):
                c.create_collection(CATALOG, vectors_config={"none": qm.VectorParams(size=1, distance=qm.Distance.DOT)})
        self._catalog_ready = True

    def create_vectors(self, name: str, dimension: int) -> None:
        """Create a chunk collection: dense (dot on unit vectors = cosine) + sparse with Qdrant's IDF modifier."""
        with self._call() as c:
            if c.collection_exists(name):
                return
            # DOT on normalised vectors equals cosine; local mode's COSINE re-normalises every stored vector per query.
            c.create_collection(
                name,
                vectors_config={"dense": qm.VectorParams(size=dimension, distance=qm.Distance.DOT)},
                sparse_vectors_config={"sparse": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
            if self.mode == "server":
                for field in ("doc_id", "content_hash"):
                    c.create_payload_index(name, field, qm.PayloadSchemaType.KEYWORD)

    def drop_vectors(self, name: str) -> None:
        """Delete a chunk collection if it exists."""
        with self._call() as c:
            if c.collection_exists(name):
                c.delete_collection(name)

    # ---- catalog records ---------------------------------------------------------------------
    def put_record(self, record_id: str, payload: dict[str, Any]) -> None:
        """Insert or replace one catalog record."""
        with self._call() as c:
            c.upsert(CATALOG, [qm.PointStruct(id=record_id, vector={"none": [1.0]}, payload=payload)])

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        """One catalog record's payload, or None."""
        with self._call() as c:
            found = c.retrieve(CATALOG, [record_id], with_payload=True)
        return dict(found[0].payload or {}) if found else None

    def find_records(self, **match: Any) -> list[dict[str, Any]]:
        """All catalog records whose payload matches every key=value given."""
        flt = build_filter(None, [qm.FieldCondition(key=k, match=qm.MatchValue(value=v)) for k, v in match.items()])
        out: list[dict[str, Any]] = []
        offset = None
        with self._call() as c:
            while True:
                points, offset = c.scroll(CATALOG, scroll_filter=flt, limit=512, offset=offset, with_payload=True)
                out.extend(dict(p.payload or {}) for p in points)
                if offset is None:
                    return out

    def delete_records(self, record_ids: Sequence[str]) -> None:
        """Remove catalog records by id."""
        if record_ids:
            with self._call() as c:
                c.delete(CATALOG, points_selector=qm.PointIdsList(points=list(record_ids)))

    # ---- chunks ------------------------------------------------------------------------------
    def upsert_chunks(
        self, name: str, ids: Sequence[str], dense: np.ndarray, sparse: Sequence[SparseVec], payloads: Sequence[dict]
    ) -> None:
        """Write chunk points (deterministic ids make this idempotent)."""
        points = [
            qm.PointStruct(
                id=pid,
                vector={"dense": vec.tolist(), "sparse": qm.SparseVector(indices=sp.indices, values=sp.values)},
                payload=payload,
            )
            for pid, vec, sp, payload in zip(ids, dense, sparse, payloads, strict=True)
        ]
        with self._call() as c:
            c.upsert(name, points, wait=True)

    def delete_chunks(self, name: str, doc_id: str, keep_hash: str | None = None) -> None:
        """Delete a document's chunks, except those of the version `keep_hash` when given."""
        must_not = [qm.FieldCondition(key="content_hash", match=qm.MatchValue(value=keep_hash))] if keep_hash else None
        flt = qm.Filter(must=[qm.FieldCondition(key="doc_id", match=qm.MatchValue(value=doc_id))], must_not=must_not)
        with self._call() as c:
            c.delete(name, points_selector=qm.FilterSelector(filter=flt), wait=True)

    def count(self, name: str) -> int:
        """Number of chunk points in a collection."""
        with self._call() as c:
            return c.count(name, exact=True).count

    def search(
        self,
        name: str,
        strategy: Strategy,
        dense: np.ndarray,
        sparse: SparseVec,
        limit: int,
        flt: qm.Filter | None,
        candidates: int = 50,
        rrf_k: int = RRF_K,
    ) -> list[qm.ScoredPoint]:
        """Dense, sparse or hybrid: plain RRF (`1 / (rrf_k + rank)`) of the dense and sparse top `candidates`,
        inside Qdrant's query API. Points come with their dense vector (relevance, MMR)."""
        dense_q = dense.tolist()
        sparse_q = qm.SparseVector(indices=sparse.indices, values=sparse.values)
        fetch = max(candidates, limit)
        prefetch: list[qm.Prefetch] | None = None
        query: Any
        using: str | None = None
        if strategy == "dense":
            query, using = dense_q, "dense"
        elif strategy == "sparse":
            query, using = sparse_q, "sparse"
        else:
            prefetch = [
                qm.Prefetch(query=dense_q, using="dense", limit=fetch, filter=flt),
                qm.Prefetch(query=sparse_q, using="sparse", limit=fetch, filter=flt),
            ]
            query = qm.RrfQuery(rrf=qm.Rrf(k=qdrant_k(rrf_k)))
        with self._call() as c:
            if not c.collection_exists(name):
                return []
            response = c.query_points(
                name,
                query=query,
                using=using,
                prefetch=prefetch,
                query_filter=flt,
                limit=limit,
                with_payload=True,
                with_vectors=["dense"],
            )
        return list(response.points)
