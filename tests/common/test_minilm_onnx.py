"""The torch-free MiniLM encoder: same vectors as sentence-transformers (committed reference), a valid graph,
built once and cached atomically, and no PyTorch anywhere in the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from llmops_common import minilm_onnx
from llmops_common.minilm_onnx import OPSET, MiniLMEncoder, build_graph, ensure_onnx, packaged_model_dir
from tests.common.minilm_sentences import FIXTURE_TEXTS, LONG

pytestmark = pytest.mark.integration  # the real model (about 1 s to build, 0.3 s to load from the cache)

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> MiniLMEncoder:
    return MiniLMEncoder(cache_dir=tmp_path_factory.mktemp("minilm"), batch_size=3)


def test_vectors_match_the_committed_sentence_transformers_reference(encoder: MiniLMEncoder) -> None:
    doc = json.loads(REFERENCE.read_text())
    assert doc["texts"] == FIXTURE_TEXTS  # the fixture and the list it was made from have not drifted apart
    reference = np.asarray(doc["vectors"], dtype=np.float32)
    got = encoder.encode(FIXTURE_TEXTS)
    assert got.shape == reference.shape == (8, 384) and got.dtype == np.float32
    assert float(np.abs(got - reference).max()) < 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_order_batching_and_padding_do_not_change_a_vector(encoder: MiniLMEncoder) -> None:
    texts = ["short", LONG, "a somewhat longer sentence than the first", ""]
    together = encoder.encode(texts)  # batch size 3: two batches, sorted by length, padded
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert float(np.abs(together - alone).max()) < 1e-5
    assert encoder.encode([]).shape == (0, 384)


def test_truncation_at_the_model_limit_and_untruncated_token_counts(encoder: MiniLMEncoder) -> None:
    words = "word " * 400
    assert encoder.max_seq_length == 256
    assert len(encoder.tokenizer.encode(words, add_special_tokens=False).ids) == 400  # counting never truncates
    # Past 254 word pieces only the first 254 are read: appending more changes nothing.
    assert float(np.abs(encoder.encode([words]) - encoder.encode([words + "tail " * 50])).max()) < 1e-6
    ids = np.array([[101, 7592, 102]], dtype=np.int64)
    hidden = encoder.hidden_states(ids, np.ones_like(ids), np.zeros_like(ids))
    assert hidden.shape == (1, 3, 384)


def test_the_graph_is_valid_onnx_at_opset_17() -> None:
    model = build_graph(packaged_model_dir())
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET == 17
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in model.graph.output] == ["last_hidden_state"]
    kinds = {n.op_type for n in model.graph.node}
    assert {"Erf", "LayerNormalization", "Softmax"} <= kinds


def test_the_graph_is_built_once_then_reused_without_leftovers(tmp_path: Path) -> None:
    first = ensure_onnx(packaged_model_dir(), tmp_path)
    stamp = first.stat().st_mtime_ns
    assert ensure_onnx(packaged_model_dir(), tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # written beside and renamed: no .tmp left
    assert first.stat().st_mode & 0o044 == 0o044  # readable by another user of a shared cache


def test_an_unwritable_cache_builds_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    encoder = MiniLMEncoder(cache_dir=blocker / "cache")
    assert encoder.encode(["still works"]).shape == (1, 384)


def test_a_model_it_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "hidden_act": "gelu"}))
    with pytest.raises(ValueError, match="only BERT"):
        MiniLMEncoder(model_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_no_pytorch_is_imported(tmp_path: Path) -> None:
    # In a fresh interpreter: this venv may have torch (the training extra), the encoder must not touch it.
    code = (
        "import sys; from pathlib import Path; from llmops_common.minilm_onnx import MiniLMEncoder; "
        f"MiniLMEncoder(cache_dir=Path({str(tmp_path)!r})).encode(['hello']); "
        "bad = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'libs'}"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_int8_encoder_is_close_to_the_float_one_and_needs_no_writable_cache(
    tmp_path: Path, encoder: MiniLMEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`quantized=True` (the gateway's semantic cache): an int8 graph made once beside the float one; with a cache
    it cannot write, it is quantised in a temp folder instead of failing."""
    int8 = MiniLMEncoder(cache_dir=tmp_path / "cache", batch_size=3, quantized=True)
    assert len(list((tmp_path / "cache").glob("*-int8-*.onnx"))) == 1
    q, f = int8.encode(FIXTURE_TEXTS), encoder.encode(FIXTURE_TEXTS)
    cosines = (q * f).sum(axis=1)
    assert float(cosines.min()) > 0.97 and float(np.abs(q - f).max()) > 1e-4  # close, but really another model

    def read_only(*_: object) -> Path:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(minilm_onnx, "ensure_onnx", read_only)  # what a locked-down container's cache does
    in_memory = MiniLMEncoder(cache_dir=tmp_path / "unused", batch_size=3, quantized=True)
    assert float(np.abs(in_memory.encode(FIXTURE_TEXTS) - q).max()) < 1e-5
