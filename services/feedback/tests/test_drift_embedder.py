"""Drift embeds prompts with the torch-free all-MiniLM-L6-v2: the same vectors as sentence-transformers
(committed reference, made on PyTorch by tests/common/make_minilm_reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmops_common.minilm_onnx import packaged_model_dir
from services.feedback.drift import Embed, sentence_embedder

REFERENCE = Path(__file__).resolve().parents[3] / "tests" / "common" / "data" / "minilm_reference.json"


def test_prompt_vectors_match_the_reference(embedder: Embed) -> None:
    doc = json.loads(REFERENCE.read_text())
    got = embedder(doc["texts"])
    assert got.shape == (len(doc["texts"]), 384)
    assert float(np.abs(got - np.asarray(doc["vectors"], dtype=np.float32)).max()) < 1e-4


def test_an_explicit_model_folder_is_read_the_same_way() -> None:
    vectors = sentence_embedder(str(packaged_model_dir()))(["hello", "world"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
