"""Write tests/common/data/minilm_reference.json: sentence-transformers' vectors for FIXTURE_TEXTS.

Needs the `training` extra (torch, sentence-transformers): `pip install -e '.[training]'`, then
`python -m tests.common.make_minilm_reference`. The torch-free test compares the ONNX encoder to this file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

from llmops_common.minilm_onnx import PACKAGE, packaged_model_dir
from tests.common.minilm_sentences import FIXTURE_TEXTS

OUT = Path(__file__).parent / "data" / "minilm_reference.json"


def main() -> None:
    """Encode the fixture texts with the reference implementation and write them with their versions."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    vectors = model.encode(FIXTURE_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    versions = {p: importlib.metadata.version(p) for p in (PACKAGE, "sentence-transformers", "torch", "transformers")}
    doc = {
        "about": "all-MiniLM-L6-v2 reference embeddings (sentence-transformers, normalised), made by "
        "tests/common/make_minilm_reference.py",
        "versions": versions,
        "texts": FIXTURE_TEXTS,
        "vectors": [[float(f"{x:.8g}") for x in row] for row in vectors.tolist()],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=None) + "\n")
    print(f"wrote {OUT} ({len(FIXTURE_TEXTS)} x {vectors.shape[1]})")


if __name__ == "__main__":
    main()
