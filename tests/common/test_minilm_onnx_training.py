"""Against the live reference: the torch-free encoder vs. sentence-transformers on 50 varied texts.

Needs the `training` extra (torch, sentence-transformers); skipped only where it is not installed. Without it,
tests/common/test_minilm_onnx.py checks the same encoder against the committed reference vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmops_common.minilm_onnx import MiniLMEncoder, packaged_model_dir
from tests.common.minilm_sentences import FIXTURE_TEXTS, TEXTS

torch = pytest.importorskip("torch", reason="the `training` extra is not installed")
sentence_transformers = pytest.importorskip("sentence_transformers", reason="the `training` extra is not installed")

pytestmark = pytest.mark.integration

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference_model() -> object:
    torch.set_num_threads(1)  # on shared cores, more threads only wait on each other
    return sentence_transformers.SentenceTransformer(str(packaged_model_dir()), device="cpu")


def _reference(model: object, texts: list[str]) -> np.ndarray:
    out = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)  # type: ignore[attr-defined]
    return np.asarray(out, dtype=np.float32)


def test_fifty_texts_match_sentence_transformers_at_any_batch_size(reference_model: object, tmp_path: Path) -> None:
    assert len(TEXTS) == 50
    reference = _reference(reference_model, TEXTS)
    encoder = MiniLMEncoder(cache_dir=tmp_path)
    for batch_size in (16, 1):  # padded batches sorted by length, and each text alone
        encoder.batch_size = batch_size
        diff = float(np.abs(encoder.encode(TEXTS) - reference).max())
        assert diff < 1e-4, (batch_size, diff)


def test_the_committed_reference_is_what_sentence_transformers_gives(reference_model: object) -> None:
    committed = np.asarray(json.loads(REFERENCE.read_text())["vectors"], dtype=np.float32)
    assert float(np.abs(committed - _reference(reference_model, FIXTURE_TEXTS)).max()) < 1e-6
