"""The learned harmful-request model: fitting, leave-one-source-out scores, and its out-of-source hits.

A plainly harmful request ("how do I cook meth") is not an injection, so it has its own model beside the
rules of `detectors/harmful_rules.py`, over the same window features (hashed n-grams + static MiniLM vector).
Positives: AdvBench, the harmful forbidden questions, and the hand-written pairs of `harmful_data.py`.
Negatives: every benign text the input model learns from (intents, code and security questions, the
forbidden questions' advice requests, paragraphs, e-mails, role-play prompts) and the pairs' ordinary side.
Jailbreaks and injections are neither: the injection model's business, and most of them wrap a harmful ask.
Like the injection models, every source is scored by a model fitted without it, and each held-out source's
threshold is chosen on the other sources' benign scores (`evaluate.choose_threshold`, input mode's rule).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from services.guardrails.detectors.features import FeatureExtractor
from services.guardrails.training import harmful_data
from services.guardrails.training.data import Example
from services.guardrails.training.evaluate import choose_threshold
from services.guardrails.training.fit import (
    CONTENT_ONLY_BENIGN_SOURCES,
    HARMFUL_REQUEST_SOURCES,
    LinearModel,
    fit,
    score,
    sources,
)
from services.guardrails.training.matrix import Matrix, build
from services.guardrails.training.system_prompts import SOURCE as SYSTEM_PROMPTS_SOURCE

ALPHA = 1e-4  # L2 strength (1e-5 was not better on the first held-out run)
# Threshold rule: at most 0.5 % of each benign source and 1 % of the attack sets' benign rows and of all benign
# texts together flagged (out of source), half the injection model's. Not blind: chosen after the first run
# under the input rule (1 % / 2 %) flagged 1.1 % of CyberSecEval's benign security prompts held out (the
# held-out advice requests and intents stayed under it); measured with the harmful rules, it moved that share to
# 0.3 % and AdvBench's held-out recall from 0.78 to 0.69, the forbidden questions' from 0.41 to 0.38.
MAX_SHARE, MAX_FPR = 0.005, 0.01


def in_training_set(ex: Example) -> bool:
    """Whether `ex` trains the harmful-request model (before holding anything out)."""
    if not ex.trainable:
        return False
    if ex.label == 1:
        return ex.source in HARMFUL_REQUEST_SOURCES or ex.source == harmful_data.SOURCE
    # The application system prompts of training/system_prompts.py teach the injection model; the harmful-request
    # model has its own (harmful_data.APP_SYSTEM_PROMPTS), and training it on these too moved its thresholds
    # (security prompts flagged, en 0.8 % -> 1.6 %) for nothing it needed.
    return ex.source not in CONTENT_ONLY_BENIGN_SOURCES and ex.source != SYSTEM_PROMPTS_SOURCE


def scored(ex: Example) -> bool:
    """Whether the leave-one-source-out run scores `ex`: harmful sources and every benign text (the
    detector runs this model in input mode on whatever is sent; jailbreak and injection rows are attacks
    anyway, so its hits on them change nothing)."""
    return ex.source != harmful_data.SOURCE and (ex.label == 0 or ex.source in HARMFUL_REQUEST_SOURCES)


def with_pairs(examples: list[Example], m: Matrix, extractor: FeatureExtractor) -> tuple[list[Example], Matrix]:
    """`examples` plus the hand-written pairs, and the matrix with their windows appended."""
    pairs = harmful_data.examples()
    mp = build(pairs, extractor)
    hashed = sp.vstack([m.hashed, mp.hashed], format="csr")
    owner = np.concatenate([m.owner, mp.owner + len(examples)])
    return examples + pairs, Matrix(hashed, np.vstack([m.dense, mp.dense]), owner)


def fit_all(examples: list[Example], m: Matrix) -> tuple[LinearModel, int]:
    """The shipped model: every training example; and how many there were."""
    chosen = np.array([in_training_set(ex) for ex in examples])
    return fit(examples, m, chosen, ALPHA), int(chosen.sum())


def loso(examples: list[Example], m: Matrix, log: bool = True) -> np.ndarray:
    """Out-of-source probability per example (NaN where not scored)."""
    src = np.array([ex.source for ex in examples])
    base = np.array([in_training_set(ex) for ex in examples])
    wanted = np.array([scored(ex) for ex in examples])
    out = np.full(len(examples), np.nan)
    for name in sources(examples):
        held = (src == name) & wanted
        if not held.any():
            continue
        model = fit(examples, m, base & (src != name), ALPHA)
        out[held] = score(model, m, held, len(examples))[held]
        if log:
            print(f"harmful loso: {name} done", flush=True)
    return out


def loso_cached(examples: list[Example], m: Matrix, cache_dir: Path | None) -> np.ndarray:
    """`loso`, memoised like `fit.loso_cached` (the key covers the examples, the features and this code)."""
    if cache_dir is None:
        return loso(examples, m)
    digest = hashlib.sha256(Path(__file__).read_bytes() + Path(harmful_data.__file__).read_bytes())
    digest.update(f"{m.hashed.shape}:{m.hashed.nnz}:{float(m.dense.sum()):.6e}".encode())
    for ex in examples:
        digest.update("\0".join((ex.text, str(ex.label), ex.source, str(ex.trainable))).encode())
    path = cache_dir / f"guardrails-harmful-oof-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    out = loso(examples, m)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def threshold(examples: list[Example], oof: np.ndarray, exclude: str | None = None) -> float:
    """MAX_SHARE / MAX_FPR on the out-of-source scores (the pairs never choose it: not scored)."""
    return choose_threshold(examples, oof, "input", exclude=exclude, max_share=MAX_SHARE, max_fpr=MAX_FPR)


def oof_hits(examples: list[Example], oof: np.ndarray) -> np.ndarray:
    """Per example: flagged by the model fitted without its source, at the threshold chosen without it."""
    src = np.array([ex.source for ex in examples])
    hits = np.zeros(len(examples), dtype=bool)
    for name in sources(examples):
        held = (src == name) & ~np.isnan(oof)
        if held.any():
            hits[held] = oof[held] >= threshold(examples, oof, exclude=name)
    return hits
