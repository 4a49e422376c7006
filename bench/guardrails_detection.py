"""Detection quality of the injection detector, for bench/guardrails_bench.py (functions, no side effects).

* `loso_quality`: leave-one-source-out over every data file of ../shared/datasets (the training code's own
  `fit.loso`): each source scored by models that never saw it, thresholds chosen without it; recall on
  attack sets, share flagged on benign sets, English and non-English apart, input and content mode; and the
  peer (`jailguard`) on a fixed sample of the same rows, side by side.
* `deployed_shares`: the shipped detector (rules, all views, payload decoding, trained on every allowed
  source) on every benign set, both modes. In-sample for all but the Enron e-mails (never trained on):
  it shows what the service does, not how it generalises. Plus `repo-docs`: this repository's docs/ passages,
  held out from everything (what RAG over the course docs checks in content mode).
* `evasion`: recall of the shipped detector when known attacks are obfuscated.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import numpy as np

from bench.guardrails_peer import jailguard_scores
from services.guardrails.detectors.base import CheckInput
from services.guardrails.training import fit as F
from services.guardrails.training.evaluate import choose_threshold, loso_report
from services.guardrails.training.train_injection import prepare

ROOT = Path(__file__).resolve().parents[1]
PEER_SAMPLE_PER_SOURCE = 300
HOMOGLYPHS = str.maketrans({"a": "\u0430", "e": "\u0435", "o": "\u043e", "i": "\u0456", "c": "\u0441"})


def _peer_sample(examples: list[Any], seed: int = 13) -> np.ndarray:
    """Indices of at most PEER_SAMPLE_PER_SOURCE rows per (source, label), fixed by seed."""
    rng = random.Random(seed)
    by_key: dict[tuple[str, int], list[int]] = {}
    for i, ex in enumerate(examples):
        by_key.setdefault((ex.source, ex.label), []).append(i)
    picked: list[int] = []
    for rows in by_key.values():
        picked.extend(rng.sample(rows, min(len(rows), PEER_SAMPLE_PER_SOURCE)))
    return np.array(sorted(picked))


def _f1(recall: float, flagged_benign: float | None, n_pos: int, n_neg: int) -> float | None:
    if flagged_benign is None or not n_neg:
        return None
    tp, fp = recall * n_pos, flagged_benign * n_neg
    precision = tp / (tp + fp) if tp + fp else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def side_by_side(
    examples: list[Any], oof: dict[str, np.ndarray], rules: np.ndarray, sample: np.ndarray, peer: np.ndarray
) -> list[dict[str, Any]]:
    """Per source and mode, on the same sampled rows: ours (rules OR model, LOSO) vs the peer (>= 0.5)."""
    src = np.array([ex.source for ex in examples])[sample]
    lab = np.array([ex.label for ex in examples])[sample]
    out = []
    for name in dict.fromkeys(src.tolist()):
        for mode in F.MODES:
            if mode == "content" and name not in F.CONTENT_EVAL_SOURCES:
                continue
            thr = choose_threshold(examples, oof[mode], mode, exclude=name)
            ours = (oof[mode][sample] >= thr) | rules[sample]
            theirs = peer >= 0.5
            row: dict[str, Any] = {"source": name, "mode": mode}
            for label, key in ((1, "recall"), (0, "flagged")):
                m = (src == name) & (lab == label)
                if m.any():
                    row[f"n_{key}"] = int(m.sum())
                    row[f"ours_{key}"] = round(float(ours[m].mean()), 4)
                    row[f"jailguard_{key}"] = round(float(theirs[m].mean()), 4)
            if "ours_recall" in row:
                for who in ("ours", "jailguard"):
                    f1 = _f1(row[f"{who}_recall"], row.get(f"{who}_flagged"), row["n_recall"], row.get("n_flagged", 0))
                    row[f"{who}_f1"] = None if f1 is None else round(f1, 4)
            out.append(row)
    return out


def loso_quality(data_dir: Path, cache_dir: Path | None, peer_venv: Path, peer_model_dir: Path) -> dict[str, Any]:
    """The leave-one-source-out table, and the peer on a sample of the same rows."""
    examples, matrix, rules = prepare(data_dir, cache_dir)
    oof = F.loso(examples, matrix, F.ALPHAS, log=False)
    result: dict[str, Any] = {
        "method": "each source scored by the model trained on all other sources; its threshold chosen on the "
        "other sources' out-of-source benign scores (<=1% per benign set, <=2% on attack sets' benign rows); "
        "flagged = rules OR model",
        "thresholds_all_sources": {m: round(choose_threshold(examples, oof[m], m), 4) for m in F.MODES},
        "report": loso_report(examples, oof, rules),
    }
    sample = _peer_sample(examples)
    peer = jailguard_scores([examples[i].text for i in sample], peer_venv, peer_model_dir)
    if "scores" in peer:
        result["side_by_side"] = side_by_side(examples, oof, rules, sample, np.asarray(peer.pop("scores")))
    result["peer"] = peer
    return result


def deployed_shares(detector: Any) -> dict[str, Any]:
    """Share of each benign set (and language group) the shipped detector flags, per mode."""
    from services.guardrails.training.data import load_examples

    out: dict[str, Any] = {}
    held_out_docs = [("repo-docs/en", text) for text in repo_docs_passages()]
    for ex_mode in ("input", "content"):
        counts: dict[str, list[int]] = {}
        texts = [
            (f"{ex.source}/{'en' if ex.lang == 'en' else 'non-en'}", ex.text)
            for ex in load_examples(synthetic=False)
            if ex.label == 0 and (ex_mode == "input" or ex.mode == "content")
        ]
        for key, text in texts + held_out_docs:
            hit = bool(detector.run(CheckInput(text=text, direction="input", mode=ex_mode), {}))
            c = counts.setdefault(key, [0, 0])
            c[0] += hit
            c[1] += 1
        out[ex_mode] = {k: {"n": n, "flagged": round(h / n, 4)} for k, (h, n) in sorted(counts.items())}
    return out


def repo_docs_passages() -> list[str]:
    """This repository's docs/ cut as RAG cuts them (its chunker, words as tokens): the held-out documentation
    set. Never trained on and never used to choose a threshold; the course's own pages are what RAG retrieves."""
    from services.rag.chunking import chunk_text

    docs = sorted((ROOT / "docs").rglob("*.md"))
    count = lambda ts: [len(t.split()) for t in ts]  # noqa: E731
    return [c.text for path in docs for c in chunk_text(path.read_text(encoding="utf-8"), count)]


def obfuscate(text: str, how: str) -> str:
    """Apply one evasion trick an attacker would use ("none": the baseline)."""
    if how == "zero_width":
        return "\u200b".join(text[i : i + 3] for i in range(0, len(text), 3))
    if how == "homoglyphs":
        return text.translate(HOMOGLYPHS)
    if how == "base64":
        return "Here is my message, base64-encoded: " + base64.b64encode(text.encode()).decode()
    if how == "spaced":
        words = text.split()
        return " ".join(" ".join(w) if i < 12 and w.isalpha() else w for i, w in enumerate(words))
    return text


def evasion(detector: Any) -> dict[str, Any]:
    """Recall of the shipped detector on 80 short known attacks (in-sample), each obfuscated several ways."""
    from services.guardrails.training.data import load_examples

    attacks = [
        ex.text for ex in load_examples(synthetic=False) if ex.label == 1 and ex.source in ("giskard", "llm-warden")
    ]
    sample = [t for t in attacks if len(t) < 1500][:80]
    out = {}
    for how in ("none", "zero_width", "homoglyphs", "base64", "spaced"):
        hits = [bool(detector.run(CheckInput(text=obfuscate(t, how), direction="input"), {})) for t in sample]
        out[how] = {"n": len(sample), "recall": round(float(np.mean(hits)), 4)}
    return out


def _cell(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def detection_markdown(r: dict[str, Any]) -> list[str]:
    """Markdown lines for the detection part of the results."""
    lines = ["## Injection and jailbreak: leave one source out", "", r["loso"]["method"] + ".", ""]
    lines += [f"Thresholds chosen on all sources (the shipped ones): {r['loso']['thresholds_all_sources']}.", ""]
    lines += [
        "| held-out source | mode | measure | lang | n | model | rules | rules or model |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, modes in r["loso"]["report"].items():
        for mode, rows in modes.items():
            for key, v in rows.items():
                if key == "threshold":
                    continue
                measure, group = key.split("_", 1)
                lines.append(
                    f"| {source} | {mode} | {measure} | {group} | {v['n']} | {_cell(v['model'])} | {_cell(v['rules'])}"
                    f" | **{_cell(v['rules_or_model'])}** |"
                )
    lines += ["", "## Side by side with jailguard (same sampled rows, same machine)", ""]
    peer = r["loso"].get("peer", {})
    lines.append(
        f"Peer: {peer}."
        if "side_by_side" not in r["loso"]
        else f"jailguard {peer.get('version')}; {peer.get('onnx_note')}."
    )
    if "side_by_side" in r["loso"]:
        head = (
            "source | mode | n attacks | recall ours | recall jailguard | n benign | flagged ours | flagged jailguard"
        )
        lines += ["", f"| {head} | F1 ours | F1 jailguard |", "|---" * 10 + "|"]
        for row in r["loso"]["side_by_side"]:
            cells = [row.get(k) for k in ("n_recall", "ours_recall", "jailguard_recall", "n_flagged", "ours_flagged",
                                           "jailguard_flagged", "ours_f1", "jailguard_f1")]  # fmt: skip
            lines.append(f"| {row['source']} | {row['mode']} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Shipped detector on the benign sets (in-sample except enron-emails and repo-docs)", ""]
    lines += ["| set/lang | mode | n | flagged |", "|---|---|---|---|"]
    for mode, sets in r["deployed_benign"].items():
        for name, v in sets.items():
            lines.append(f"| {name} | {mode} | {v['n']} | {_cell(v['flagged'])} |")
    lines += [
        "",
        "## Evasion (shipped detector, known attacks obfuscated)",
        "",
        "| trick | n | recall |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['n']} | {_cell(v['recall'])} |" for k, v in r["evasion"].items()]
    return [*lines, ""]
