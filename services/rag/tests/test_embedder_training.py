"""Against the live reference: the embedder vs. sentence-transformers on PyTorch, the way it ran before.

Needs the `training` extra (torch, sentence-transformers); skipped only where it is not installed. Without it,
test_embedder.py checks the same vectors against committed reference vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmops_common.minilm_onnx import packaged_model_dir
from services.rag.embedder import Embedder
from services.rag.tests.test_embedder import TEXTS

torch = pytest.importorskip("torch", reason="the `training` extra is not installed")
sentence_transformers = pytest.importorskip("sentence_transformers", reason="the `training` extra is not installed")


def test_embedder_and_sentence_transformers_agree(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    reference = sentence_transformers.SentenceTransformer(str(packaged_model_dir()), device="cpu")
    want = reference.encode(
        TEXTS, batch_size=2, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    got = Embedder(batch_size=2, threads=1, cache_dir=tmp_path).embed(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    assert float(np.abs(got - want).max()) < 1e-4
    # Chunk sizes are counted the same way as with the transformers tokenizer the service used before.
    counted = [len(ids) for ids in reference.tokenizer(TEXTS, add_special_tokens=False)["input_ids"]]
    assert Embedder(threads=1, cache_dir=tmp_path).count_tokens(TEXTS) == counted
