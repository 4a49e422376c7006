"""The sentence-embedding model (all-MiniLM-L6-v2 shipped inside a PyPI package), loaded offline, batched.

It runs on ONNX Runtime without PyTorch: `llmops_common.minilm_onnx` builds the encoder's ONNX graph from the
packaged safetensors once, caches it (under data_dir/models in the service), and reproduces
sentence-transformers' vectors to float32 rounding (checked against committed reference vectors). A query takes
a few milliseconds on one CPU thread, which is most of a retrieval's latency budget. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from llmops_common.minilm_onnx import MODEL_NAME, PACKAGE, MiniLMEncoder, default_cache_dir

# "onnx" is the only runtime; "auto" stays accepted so existing settings keep meaning the same thing.
Backend = Literal["auto", "onnx"]
DEFAULT_CACHE = default_cache_dir()


class Embedder:
    """Encodes texts into unit-length float32 vectors; also exposes the model's tokenizer for chunking."""

    def __init__(
        self,
        batch_size: int = 64,
        threads: int | None = None,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
    ) -> None:
        if backend not in ("auto", "onnx"):
            # PyTorch is no runtime dependency any more: the reference lives in the `training` extra's tests.
            raise ValueError(f"unknown embedding backend {backend!r}: the embedder runs on ONNX Runtime only")
        self._encoder = MiniLMEncoder(cache_dir=cache_dir or DEFAULT_CACHE, threads=threads or 1, batch_size=batch_size)
        # A `tokenizers.Tokenizer` without truncation or padding: what chunking counts.
        self.tokenizer = self._encoder.tokenizer
        self.max_seq_length = self._encoder.max_seq_length
        self.max_tokens = self.max_seq_length - 2  # [CLS] and [SEP]
        self.dimension = self._encoder.dimension
        self.batch_size = batch_size
        self.model_name = MODEL_NAME
        self.model_version = f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}"
        self.backend: Literal["onnx"] = "onnx"
        # ONNX Runtime releases the GIL; the lock keeps two request threads from oversubscribing 2 cores.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches; rows are L2-normalised so a dot product is the cosine."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            return self._encoder.encode(list(texts))

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
