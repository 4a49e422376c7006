"""The ONNX backend computes the same vectors as the sentence-transformers reference, from a local export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.rag.embedder import Embedder

TEXTS = [
    "What is the capital of France?",
    "Gateway overhead is measured against the same fake upstream called directly, at 1, 10 and 100 connections.",
    "x",
    "Retrieval-augmented generation grounds an answer in retrieved passages; citations map to chunk ids. " * 12,
    "Les modèles sont enregistrés dans MLflow avec leurs alias (production, challenger).",
]


def test_onnx_and_torch_backends_agree(tmp_path: Path) -> None:
    onnx = Embedder(batch_size=2, threads=1, backend="onnx", cache_dir=tmp_path)
    torch = Embedder(batch_size=2, threads=1, backend="torch")
    assert onnx.backend == "onnx" and torch.backend == "torch"
    a, b = onnx.embed(TEXTS), torch.embed(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert a.dtype == np.float32
    # Same model, two runtimes: equal to float32 rounding, in the caller's order (ONNX batches by length).
    assert float(np.abs(a - b).max()) < 1e-4
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # A query embeds the same alone as inside a padded batch.
    assert float(np.abs(onnx.embed_one(TEXTS[3]) - a[3]).max()) < 1e-4


def test_the_export_happens_once_and_is_reused(tmp_path: Path) -> None:
    Embedder(threads=1, backend="onnx", cache_dir=tmp_path)
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1
    assert not list(tmp_path.glob("*.tmp"))  # written beside and renamed: no leftovers
    stamp = exported[0].stat().st_mtime_ns
    again = Embedder(threads=1, backend="onnx", cache_dir=tmp_path)
    assert exported[0].stat().st_mtime_ns == stamp
    assert again.embed(["hello"]).shape == (1, 384)


def test_empty_input_gives_an_empty_matrix(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, embedder.dimension)
