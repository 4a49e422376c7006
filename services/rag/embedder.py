"""The sentence-embedding model (all-MiniLM-L6-v2 shipped inside a PyPI package), loaded offline, batched.

It runs on ONNX Runtime without PyTorch: `llmops_common.minilm_onnx` builds the encoder's ONNX graph from the
packaged safetensors once, caches it (under data_dir/models in the service), and reproduces
sentence-transformers' vectors to float32 rounding (checked against committed reference vectors). A query takes
a few milliseconds on one CPU thread, which is most of a retrieval's latency budget. Nothing is downloaded.

Ingestion speed (issue 17): texts are tokenised once, sorted by their token count and cut into batches, each
padded only to its own longest text (a batch of short chunks no longer pays for a long one's padding). Batches run
on a small pool of ONNX Runtime sessions (`workers`, each with `threads` intra-op threads), so several cores embed
at once; a query takes one free session and waits for one batch at most, never for a whole ingestion step.
`quantized=True` runs an int8 copy of the graph (llmops_common.minilm_onnx.ensure_quantized: ONNX Runtime's dynamic
quantisation of the packaged weights, made once and cached beside the float graph): faster on CPUs, at a
retrieval-quality cost measured by bench/rag_embed_speed.py. The float path gives the same vectors as before (tested).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmops_common.minilm_onnx import (
    MODEL_NAME,
    PACKAGE,
    MiniLMEncoder,
    default_cache_dir,
    ensure_onnx,
    ensure_quantized,
)

# "onnx" is the only runtime; "auto" stays accepted so existing settings keep meaning the same thing.
Backend = Literal["auto", "onnx"]
DEFAULT_CACHE = default_cache_dir()

log = logging.getLogger("rag.embedder")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, not the machine's count: containers and taskset limit it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Embedder:
    """Encodes texts into unit-length float32 vectors; also exposes the model's tokenizer for chunking."""

    def __init__(
        self,
        batch_size: int = 64,
        threads: int | None = None,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
        *,
        workers: int = 1,
        quantized: bool = False,
    ) -> None:
        if backend not in ("auto", "onnx"):
            # PyTorch is no runtime dependency any more: the reference lives in the `training` extra's tests.
            raise ValueError(f"unknown embedding backend {backend!r}: the embedder runs on ONNX Runtime only")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        cache = cache_dir or DEFAULT_CACHE
        self.threads = threads or 1
        self.workers = max(1, workers)
        self.quantized = quantized
        self._encoder = MiniLMEncoder(cache_dir=cache, threads=self.threads, batch_size=batch_size)
        # A `tokenizers.Tokenizer` without truncation or padding: what chunking counts.
        self.tokenizer = self._encoder.tokenizer
        self.max_seq_length = self._encoder.max_seq_length
        self.max_tokens = self.max_seq_length - 2  # [CLS] and [SEP]
        self.dimension = self._encoder.dimension
        self.batch_size = batch_size
        self.model_name = MODEL_NAME
        self.model_version = f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}" + ("+int8" if quantized else "")
        self.backend: Literal["onnx"] = "onnx"
        # What the model is fed: truncated to its window, NOT padded (each batch is padded to its own longest text).
        self._feed = Tokenizer.from_file(str(self._encoder.model_dir / "tokenizer.json"))
        self._feed.enable_truncation(max_length=self.max_seq_length)
        self._feed.no_padding()
        pad = self._feed.token_to_id("[PAD]")
        self._pad_id = 0 if pad is None else pad
        # The session pool. The float path reuses the encoder's own session as the first one (same graph, same
        # options); the others, and all int8 ones, are opened here with the same options.
        sessions: list[Any] = []
        if not quantized:
            sessions.append(self._encoder.hidden_states)
        graph: Path | None = None
        try:
            graph = ensure_onnx(self._encoder.model_dir, cache)
            if quantized:
                graph = ensure_quantized(graph)
        except OSError as exc:  # a read-only cache: the float graph is in the encoder's memory, int8 needs a file
            if quantized:
                raise RuntimeError(f"the int8 embedder needs a writable model cache ({cache}): {exc}") from exc
        while len(sessions) < self.workers:
            assert graph is not None  # (only a float pool of one can run without the cached file)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # No memory arena: an arena keeps each session's peak (a batch of long chunks: hundreds of MB of attention
            # scores) for good, per session; a pool of them ran a benchmark out of memory. Freed after each run.
            options.enable_cpu_mem_arena = False
            session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            sessions.append(_runner(session))
        self._free: queue.Queue[Any] = queue.Queue()
        for run in sessions:
            self._free.put(run)
        # ONNX Runtime releases the GIL: the pool's threads really run batches side by side.
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rag-embed") if self.workers > 1 else None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches; rows are L2-normalised so a dot product is the cosine."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._feed.encode_batch(list(texts))
        # Longest first (the slowest batch starts first), batched by token count: padding only within a batch. With
        # several sessions the texts are spread over all of them (an ingestion step is often a single batch's worth).
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        size = min(self.batch_size, -(-len(order) // self.workers))
        batches = [order[s : s + size] for s in range(0, len(order), size)]

        def run(rows: list[int]) -> None:
            out[rows] = self._embed_batch([encodings[i] for i in rows])

        if self._pool is None or len(batches) == 1:
            for rows in batches:
                run(rows)
        else:
            for future in [self._pool.submit(run, rows) for rows in batches]:
                future.result()
        return out

    def _embed_batch(self, encodings: list[Any]) -> np.ndarray:
        """One padded batch through a free session, mean-pooled over real tokens and normalised."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, 1, e.type_ids
        run = self._free.get()  # waits for a session when every one is busy
        try:
            hidden = run(ids, mask, types)
        finally:
            self._free.put(run)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed a single query."""
        return self.embed([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word-piece counts without special tokens (what a chunk costs the model)."""
        if not texts:
            return []
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def tokens_read(self, texts: Sequence[str]) -> int:
        """Tokens the model reads to embed `texts` (each truncated to its window): what the gateway charges."""
        return sum(min(n, self.max_tokens) for n in self.count_tokens(texts))


def _runner(session: Any) -> Any:
    """A session as a function of (input_ids, attention_mask, token_type_ids) -> last hidden state."""

    def run(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return np.asarray(session.run(None, feeds)[0])

    return run
