"""The ingestion pipeline: extract, normalise, validate, dedupe, redact, chunk, embed (batched), upsert.

A bad document records a per-document error and the run goes on. Embedding (the bottleneck) overlaps
with writing the previous group to Qdrant, so the pipeline runs close to the embedder's own speed.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.rag.catalog import Catalog, now
from services.rag.chunking import CHUNKER_NAME, CHUNKER_VERSION, Chunk, chunk_text
from services.rag.dedup import DedupMode, resolve
from services.rag.embedder import Embedder
from services.rag.extract import (
    DocumentError,
    ParseLimits,
    content_hash,
    detect_format,
    extract,
    normalise,
    validate,
)
from services.rag.sparse import BM25Encoder
from services.rag.store import point_id

log = logging.getLogger("rag.ingest")


class Redactor(Protocol):
    """Optional PII redaction (the guardrails service); returns None when it is unavailable."""

    def redact(self, text: str) -> str | None: ...


@dataclass
class RawDocument:
    """One input document as received (bytes for uploads, str for JSON)."""

    data: bytes | str
    doc_id: str | None = None
    title: str | None = None
    content_type: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    invalid: tuple[str, str] | None = None  # (code, message) for input that could not even be parsed


class CollectionDeleted(Exception):
    """The target collection was deleted while the job ran (the job ends with `collection_deleted`)."""


class EmbeddingRefused(Exception):
    """The gateway refused to charge a group's embedding (budget spent, TPM reached, key revoked): the group and
    every document after it fail with `code`; what was indexed before stays."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Progress:
    """Live counters a job exposes while it runs (plain ints: written by one thread, read by others)."""

    documents_total: int = 0
    documents_read: int = 0  # parsed and chunked (or settled without chunks): moves at every document
    documents_done: int = 0  # settled: indexed, unchanged, duplicate or failed
    chunks_total: int = 0  # chunks of the documents read so far
    chunks_embedded: int = 0  # moves at every embedding batch (at most RAG_INGEST_GROUP_CHUNKS chunks)
    chunks_done: int = 0  # written to the index
    batches_done: int = 0  # embedding batches done
    results: list[dict[str, Any]] = field(default_factory=list)
    cancel_requested: bool = False  # set by a cancel; the run stops at its next step and reports what it did
    updated_at: float = field(default_factory=time.time)
    # Charges the caller's key for `tokens` about to be embedded (raises EmbeddingRefused); None: not metered
    # (the operator's CLI).
    meter: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Results that failed."""
        return [r for r in self.results if r["status"] == "failed"]


class StepSizer:
    """How many chunks the next embedding step may take so that it ends within `target_s` seconds.

    Progress moves once per step, and a fixed number of chunks per step is not a fixed time: 32 long chunks took
    2.1 s on one idle thread and over 5 s at ~6 chunks/s on a loaded box. The sizer learns the embedder's seconds
    per word piece from the steps it times and packs the next step's chunks by their token counts up to the
    target. It reacts at once to a slower step (the estimate never stays below the latest measure) and only
    gradually to faster ones, so a sudden load costs one step over the target at most. Before the first measure a
    small probe step is taken. One sizer is shared by the pipeline's jobs (plain floats: the GIL suffices).
    """

    PROBE_CHUNKS = 4

    def __init__(self, target_s: float, max_chunks: int) -> None:
        self.target_s = target_s
        self.max_chunks = max_chunks
        self.seconds_per_token: float | None = None

    def take(self, tokens: list[int]) -> int:
        """How many of the next chunks (their word-piece counts, in order) the next step embeds: at least one."""
        limit = min(len(tokens), self.max_chunks)
        if self.seconds_per_token is None:
            return min(limit, self.PROBE_CHUNKS)
        budget = self.target_s / self.seconds_per_token
        n, total = 0, 0
        while n < limit and (n == 0 or total + tokens[n] <= budget):
            total += tokens[n]
            n += 1
        return n

    def observe(self, tokens: int, seconds: float) -> None:
        """Record a step: `tokens` word pieces embedded in `seconds`."""
        rate = seconds / max(tokens, 1)
        old = self.seconds_per_token
        self.seconds_per_token = rate if old is None else max(rate, 0.7 * old + 0.3 * rate)


@dataclass
class _Prepared:
    doc_id: str
    title: str
    hash: str
    chunks: list[Chunk]
    metadata: dict[str, Any]
    source: str
    warnings: list[str]


class IngestionPipeline:
    """Runs one ingestion into one collection; thread-bound (call from a worker thread)."""

    def __init__(
        self,
        embedder: Embedder,
        encoder: BM25Encoder,
        catalog: Catalog,
        *,
        chunk_size: int,
        chunk_overlap: int,
        min_chars: int,
        max_chars: int,
        redactor: Redactor | None = None,
        group_chunks: int = 32,
        parse_limits: ParseLimits | None = None,
        dedup: DedupMode = "skip",
        step_target_s: float = 1.5,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.embedder = embedder
        self.encoder = encoder
        self.catalog = catalog
        self.store = catalog.store
        self.chunk_size = min(chunk_size, embedder.max_tokens)
        self.chunk_overlap = min(chunk_overlap, self.chunk_size // 2)
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.redactor = redactor
        # Small groups: progress moves every few seconds and a job yields the worker to other teams often.
        self.group_chunks = group_chunks
        # ... and each embedding step is bounded in time too, whatever the chunks' length and the machine's load.
        self.sizer = StepSizer(step_target_s, group_chunks)
        self.clock = clock
        self.parse_limits = parse_limits or ParseLimits(max_chars=max_chars)
        self.dedup = dedup  # across runs (dedup.py); inside one job a repeated hash is always a duplicate

    def params(self) -> dict[str, Any]:
        """Everything that decides what the index contains (logged with each run)."""
        return {
            "chunker": CHUNKER_NAME,
            "chunker_version": CHUNKER_VERSION,
            "chunk_size_tokens": self.chunk_size,
            "chunk_overlap_tokens": self.chunk_overlap,
            "embedding_model": self.embedder.model_name,
            "embedding_model_version": self.embedder.model_version,
            "embedding_dimension": self.embedder.dimension,
            "sparse_encoder": f"bm25-hashed(k1={self.encoder.k1},b={self.encoder.b},avgdl={self.encoder.avgdl})",
        }

    def _prepare(
        self, raw: RawDocument, collection: dict[str, Any], seen: dict[str, str], redact: bool
    ) -> _Prepared | dict[str, Any]:
        """Return a prepared document, or a finished result (unchanged / duplicate)."""
        if raw.invalid:
            raise DocumentError(*raw.invalid)
        fmt = detect_format(raw.content_type, raw.filename)
        text, found_title = extract(raw.data, fmt, self.parse_limits)
        text = normalise(text)
        validate(text, self.min_chars, self.max_chars)
        warnings: list[str] = []
        if redact:
            redacted = self.redactor.redact(text) if self.redactor else None
            if redacted is None:
                warnings.append("pii_redaction_skipped: guardrails service unavailable")
            else:
                text = normalise(redacted)
        digest = content_hash(text)
        doc_id = raw.doc_id or (raw.filename or "").strip() or f"doc-{digest[:16]}"
        title = raw.title or found_title or raw.filename or doc_id
        team, name = collection["team"], collection["name"]
        if digest in seen and seen[digest] != doc_id:
            return {"doc_id": doc_id, "status": "duplicate", "duplicate_of": seen[digest], "chunks": 0}
        seen[digest] = doc_id
        existing = self.catalog.get_document(team, name, doc_id)
        if existing and existing.get("status") == "indexed" and existing.get("content_hash") == digest:
            return {"doc_id": doc_id, "status": "unchanged", "chunks": existing.get("chunks", 0)}
        found = {"doc_id": doc_id, "hash": digest, "title": title, "source": raw.filename or "api"}
        duplicate = resolve(self.catalog, collection, self.dedup, found | {"metadata": raw.metadata}, existing)
        if duplicate is not None:
            seen[digest] = duplicate["duplicate_of"]  # a later copy in this job points at the original too
            return duplicate
        chunks = chunk_text(text, self.embedder.count_tokens, self.chunk_size, self.chunk_overlap)
        source = raw.filename or "api"
        return _Prepared(doc_id, title, digest, chunks, raw.metadata, source, warnings)

    def _write(self, collection: dict[str, Any], group: list[_Prepared], vectors: Any, progress: Progress) -> None:
        """Upsert a group's chunks, drop older versions of those documents, then record them as indexed."""
        team, name, qname = collection["team"], collection["name"], collection["qdrant_collection"]
        self.check_collection(collection)
        ids, payloads, sparse = [], [], []
        for doc in group:
            for ch in doc.chunks:
                ids.append(point_id(team, name, doc.doc_id, doc.hash, str(ch.index)))
                sparse.append(self.encoder.encode_document(f"{doc.title}\n{ch.section}\n{ch.text}"))
                payloads.append(
                    {
                        "doc_id": doc.doc_id,
                        "title": doc.title,
                        "section": ch.section,
                        "text": ch.text,
                        "chunk_index": ch.index,
                        "tokens": ch.tokens,
                        "content_hash": doc.hash,
                        "source": doc.source,
                        "meta": doc.metadata,
                    }
                )
        if ids:
            self.store.upsert_chunks(qname, ids, vectors, sparse, payloads)
        for doc in group:
            self.store.delete_chunks(qname, doc.doc_id, keep_hash=doc.hash)
            self.catalog.put_document(
                {
                    "kind": "document",
                    "team": team,
                    "collection": name,
                    "doc_id": doc.doc_id,
                    "title": doc.title,
                    "status": "indexed",
                    "content_hash": doc.hash,
                    "chunks": len(doc.chunks),
                    "source": doc.source,
                    "metadata": doc.metadata,
                    "updated_at": now(),
                    "error": None,
                }
            )
            progress.results.append(
                {"doc_id": doc.doc_id, "status": "indexed", "chunks": len(doc.chunks), "warnings": doc.warnings}
            )
            progress.chunks_done += len(doc.chunks)
            progress.documents_done += 1
            progress.updated_at = time.time()

    def check_collection(self, collection: dict[str, Any]) -> None:
        """Raise CollectionDeleted when the collection is gone (or was deleted and created again)."""
        current = self.catalog.get_collection(collection["team"], collection["name"])
        if current is None or current.get("created_at") != collection.get("created_at"):  # (deleted, maybe re-created)
            raise CollectionDeleted(f"collection '{collection['name']}' was deleted while the job ran")

    def run(
        self, collection: dict[str, Any], docs: list[RawDocument], progress: Progress, redact: bool = False
    ) -> dict[str, Any]:
        """Ingest all documents in one go; returns the run record (also stored in the catalog)."""
        steps = self.steps(collection, docs, progress, redact)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return dict(done.value)

    def steps(
        self, collection: dict[str, Any], docs: list[RawDocument], progress: Progress, redact: bool = False
    ) -> Generator[None, None, dict[str, Any]]:
        """The run in small steps (one document, or one embedded group): the job scheduler interleaves teams'
        jobs step by step, and a cancel takes effect between steps. Returns the run record."""
        started = time.time()
        progress.documents_total = len(docs)
        seen: dict[str, str] = {}
        input_digest = hashlib.sha256()
        group: list[_Prepared] = []
        pending: Future[None] | None = None
        embed_s = 0.0
        refused: EmbeddingRefused | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-upsert") as writer:
            for i, raw in enumerate(docs):
                if progress.cancel_requested:
                    break
                if refused is not None:  # the key may not embed more: the rest is reported, not processed
                    progress.documents_read += 1
                    self._failed(progress, raw.doc_id or raw.filename or f"#{i}", refused.code, refused.message)
                    continue
                try:
                    prepared = self._prepare(raw, collection, seen, redact)
                except DocumentError as exc:
                    progress.documents_read += 1
                    self._failed(progress, raw.doc_id or raw.filename or f"#{i}", exc.code, exc.message)
                    yield
                    continue
                progress.documents_read += 1
                progress.updated_at = time.time()
                if isinstance(prepared, dict):
                    input_digest.update(f"{prepared['doc_id']}:{prepared.get('duplicate_of', '')}".encode())
                    progress.results.append(prepared)
                    progress.documents_done += 1
                    yield
                    continue
                progress.chunks_total += len(prepared.chunks)
                input_digest.update(f"{prepared.doc_id}:{prepared.hash}\n".encode())
                group.append(prepared)
                if sum(len(d.chunks) for d in group) >= self.group_chunks or i == len(docs) - 1:
                    try:
                        pending, spent = yield from self._flush(collection, group, progress, writer, pending)
                        embed_s += spent
                    except EmbeddingRefused as exc:
                        refused = exc
                        for doc in group:
                            self._failed(progress, doc.doc_id, exc.code, exc.message)
                    group = []
                yield
            if group and not progress.cancel_requested and refused is None:
                try:
                    pending, spent = yield from self._flush(collection, group, progress, writer, pending)
                    embed_s += spent
                except EmbeddingRefused as exc:
                    for doc in group:
                        self._failed(progress, doc.doc_id, exc.code, exc.message)
            if pending is not None:
                pending.result()
        if not progress.cancel_requested:
            self.check_collection(collection)  # a delete after the last write must not leave a stray run record
        return self._record(collection, progress, input_digest.hexdigest(), started, embed_s)

    def _flush(
        self,
        collection: dict[str, Any],
        group: list[_Prepared],
        progress: Progress,
        writer: ThreadPoolExecutor,
        pending: Future[None] | None,
    ) -> Generator[None, None, tuple[Future[None], float]]:
        """Embed a group in steps of at most `group_chunks` chunks and about `step_target_s` seconds (one step each:
        a long document shows progress and yields the worker every few seconds, not once at its end), then hand
        it to the writer."""
        texts = [
            f"{d.title} > {c.section}\n{c.text}" if c.section else f"{d.title}\n{c.text}"
            for d in group
            for c in d.chunks
        ]
        # What the model reads per text ([CLS] and [SEP] included): the unit the sizer's time estimate is in.
        tokens = [min(n, self.embedder.max_tokens) + 2 for n in self.embedder.count_tokens(texts)]
        parts, spent, start = [], 0.0, 0
        while start < len(texts):
            size = self.sizer.take(tokens[start:])
            batch = texts[start : start + size]
            if progress.meter is not None:  # charged to the caller's key before the work (raises EmbeddingRefused)
                progress.meter(sum(tokens[start : start + size]) - 2 * size)  # = embedder.tokens_read(batch)
            t0 = self.clock()
            parts.append(self.embedder.embed(batch))
            took = self.clock() - t0
            spent += took
            self.sizer.observe(sum(tokens[start : start + size]), took)
            start += size
            progress.chunks_embedded += len(batch)
            progress.batches_done += 1
            progress.updated_at = time.time()
            if start < len(texts):
                yield
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.embedder.dimension), dtype=np.float32)
        if pending is not None:
            pending.result()  # keep at most one write in flight, and surface its failure here
        return writer.submit(self._write, collection, list(group), vectors, progress), spent

    @staticmethod
    def _failed(progress: Progress, doc_id: str, code: str, message: str) -> None:
        progress.results.append({"doc_id": doc_id, "status": "failed", "code": code, "error": message, "chunks": 0})
        progress.documents_done += 1
        progress.updated_at = time.time()

    def _record(
        self, collection: dict[str, Any], progress: Progress, input_hash: str, started: float, embed_s: float
    ) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for result in progress.results:
            counts[result["status"]] = counts.get(result["status"], 0) + 1
        collection = self.catalog.refresh_stats(collection)
        if progress.cancel_requested:
            counts["not_processed"] = progress.documents_total - progress.documents_done
        run = {
            "run_id": uuid.uuid4().hex,
            "team": collection["team"],
            "collection": collection["name"],
            "params": self.params(),
            "counts": {"documents": len(progress.results), "chunks": progress.chunks_done, **counts},
            "input_hash": input_hash,
            "data_version": collection["data_version"],
            "started_at": started,
            "finished_at": time.time(),
            "embed_seconds": round(embed_s, 3),
        }
        self.catalog.put_run(run)
        collection["last_ingest_run"] = run["run_id"]
        self.catalog.save_collection(collection)
        return run
