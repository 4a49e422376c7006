"""Fitting and scoring the linear injection models, and leave-one-source-out (LOSO) evaluation.

Two models share the features and differ in what they learn from:
  * `input`: what a user says. Positives: direct injections and jailbreaks. Data-borne attacks
    (InjecAgent, spikee) are left out: their payloads are ordinary requests ("grant Amy access to the lock")
    that are fine when the user says them.
  * `content`: what the model reads. Positives: every attack, including instructions hidden in tool results
    and documents (InjecAgent, spikee, CyberSecEval's indirect rows).
Negatives of both: every trainable benign text.
Sample weights balance the classes and give each source a weight that grows with the square root of its
size, so 14,000 XQuAD questions do not drown 32 Giskard attacks.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import SGDClassifier

from services.guardrails.training.data import PLANTED, SEED, Example, origins
from services.guardrails.training.man_pages import SOURCE as MAN_SOURCE
from services.guardrails.training.matrix import Matrix
from services.guardrails.training.package_docs import SNAPSHOTS as DOCS_SNAPSHOTS

MODES = ("input", "content")
CONTENT_ONLY_ATTACK_SOURCES = frozenset({"injecagent", "spikee", PLANTED})
# Plainly harmful requests ("how do I hack an e-mail account") are not injections or jailbreaks: a topic or
# moderation question, and as positives they teach the model that every security question is an attack
# (CyberSecEval's benign security prompts). Measured, not trained on.
HARMFUL_REQUEST_SOURCES = frozenset({"advbench", "forbidden-questions"})
# Documentation passages teach the content model that Markdown, code and "you"-addressed how-tos are what
# retrieved documents look like. As input-mode negatives they cost jailbreak recall (in-the-wild 0.75 -> 0.70
# held out: long Markdown-formatted jailbreaks read like a README) for no input-mode benefit, so content only.
CONTENT_ONLY_BENIGN_SOURCES = frozenset({*DOCS_SNAPSHOTS, MAN_SOURCE})
DOCUMENT_SOURCES = frozenset(
    {"xquad", "llmail-emails", "spikee", "injecagent", "enron-emails", *DOCS_SNAPSHOTS, MAN_SOURCE}
)
CONTENT_EVAL_SOURCES = DOCUMENT_SOURCES | {"cyberseceval-pi"}
# L2 strength per mode, chosen on the leave-one-source-out results over all sources (1e-5, 1e-4, 1e-3 tried):
# the input model keeps more recall on jailbreaks with little regularisation; the content model needs more,
# or unseen document styles (and languages) score as attacks.
ALPHAS = {"input": 1e-5, "content": 1e-3}
TRAIN_WINDOWS = 4


@dataclass
class LinearModel:
    """Weights of one mode's model: hashed part, dense part, intercept."""

    hashed: np.ndarray
    dense: np.ndarray
    intercept: float

    def logits(self, m: Matrix, rows: np.ndarray) -> np.ndarray:
        """Logit of each selected window row."""
        return np.asarray(m.hashed[rows] @ self.hashed).ravel() + m.dense[rows] @ self.dense + self.intercept


def in_training_set(ex: Example, mode: str) -> bool:
    """Whether `ex` is a training example of the `mode` model (before holding anything out)."""
    if not ex.trainable or (ex.source in HARMFUL_REQUEST_SOURCES and ex.label == 1):
        return False
    if mode == "input" and ex.source in CONTENT_ONLY_BENIGN_SOURCES:
        return False
    return mode == "content" or not (ex.label == 1 and ex.source in CONTENT_ONLY_ATTACK_SOURCES)


def _weights(examples: list[Example], chosen: np.ndarray) -> np.ndarray:
    """Per-example weight: class-balanced, sqrt-of-size per source; then per language other than English,
    attacks never outweigh the benign texts of that language, and a language with no benign text in
    training contributes no attacks: otherwise the model learns "Vietnamese means attack" from the few
    machine-translated attacks, and blocks every Vietnamese user."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for i in np.flatnonzero(chosen):
        counts[(examples[i].label, examples[i].source)] += 1
    per_class = {lab: sum(np.sqrt(n) for (lb, _), n in counts.items() if lb == lab) for lab in (0, 1)}
    w = np.zeros(len(examples))
    for i in np.flatnonzero(chosen):
        ex = examples[i]
        n = counts[(ex.label, ex.source)]
        w[i] = np.sqrt(n) / n / per_class[ex.label]
    mass: dict[tuple[str, int], float] = defaultdict(float)
    for i in np.flatnonzero(chosen):
        mass[(examples[i].lang, examples[i].label)] += w[i]
    for i in np.flatnonzero(chosen):
        ex = examples[i]
        if ex.label == 1 and ex.lang != "en":
            w[i] *= min(1.0, mass[(ex.lang, 0)] / mass[(ex.lang, 1)])
    return w * chosen.sum() / w.sum()


def _training_rows(m: Matrix, chosen: np.ndarray, n_examples: int) -> np.ndarray:
    """Rows of the chosen examples, at most TRAIN_WINDOWS evenly spaced windows per text (long jailbreaks
    repeat themselves; more windows cost fitting time and add little)."""
    rows = m.rows_of(chosen)
    counts = np.bincount(m.owner, minlength=n_examples)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(m.owner.size) - first[m.owner]
    step = np.maximum(1, np.ceil(counts / TRAIN_WINDOWS)).astype(int)
    keep = rank[rows] % step[m.owner[rows]] == 0
    return rows[keep]


def fit(examples: list[Example], m: Matrix, chosen: np.ndarray, alpha: float) -> LinearModel:
    """Logistic regression on the windows of the chosen examples."""
    rows = _training_rows(m, chosen, len(examples))
    per_example = _weights(examples, chosen)
    windows_per_example = np.bincount(m.owner[rows], minlength=len(examples)).astype(float)
    sample_weight = per_example[m.owner[rows]] / np.maximum(windows_per_example[m.owner[rows]], 1.0)
    x = m.full()[rows]
    y = np.array([examples[i].label for i in m.owner[rows]])
    # Logistic loss by SGD: ten times faster than liblinear on these 30M non-zeros, same ranking quality.
    clf = SGDClassifier(loss="log_loss", alpha=alpha, max_iter=15, tol=None, average=True, random_state=SEED)
    clf.fit(x, y, sample_weight=sample_weight * sample_weight.size / sample_weight.sum())
    coef = clf.coef_[0].astype(np.float16).astype(np.float32)  # as shipped (float16)
    return LinearModel(coef[: m.hashed.shape[1]], coef[m.hashed.shape[1] :], float(clf.intercept_[0]))


def score(model: LinearModel, m: Matrix, chosen: np.ndarray, n_examples: int) -> np.ndarray:
    """Probability per example (its highest window); NaN for examples not chosen."""
    rows = m.rows_of(chosen)
    out = np.full(n_examples, -np.inf)
    np.maximum.at(out, m.owner[rows], model.logits(m, rows))
    prob = 1.0 / (1.0 + np.exp(-out))
    prob[~chosen] = np.nan
    return prob


def sources(examples: list[Example]) -> list[str]:
    """Source names in report order."""
    return list(dict.fromkeys(ex.source for ex in examples))


def loso(
    examples: list[Example], m: Matrix, alphas: dict[str, float] | None = None, log: bool = True
) -> dict[str, np.ndarray]:
    """Out-of-source scores per mode: each example scored by the model trained without its source."""
    src = np.array([ex.source for ex in examples])
    base = {mode: np.array([in_training_set(ex, mode) for ex in examples]) for mode in MODES}
    out = {mode: np.full(len(examples), np.nan) for mode in MODES}
    derived = [origins(ex) for ex in examples]
    for name in sources(examples):
        if name == PLANTED:
            continue  # synthetic: trained on, never reported
        held = src == name
        unseen = held | np.array([name in o for o in derived])  # planted documents made from it, too
        for mode in MODES:
            if mode == "content" and name not in CONTENT_EVAL_SOURCES:
                continue  # content mode is measured where documents and data-borne attacks are
            model = fit(examples, m, base[mode] & ~unseen, (alphas or ALPHAS)[mode])
            out[mode][held] = score(model, m, held, len(examples))[held]
        if log:
            print(f"loso: {name} done", flush=True)
    return out


def loso_cached(
    examples: list[Example], m: Matrix, cache_dir: Path | None, alphas: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """`loso`, memoised on disk: the training run and the bench's quality stage then share one set of
    out-of-source scores (each is 20 minutes of fitting on a loaded 2-core machine). The key covers every
    example (text, label, source, mode, trainability), the features, the alphas and this module's code."""
    if cache_dir is None:
        return loso(examples, m, alphas)
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(repr(sorted((alphas or ALPHAS).items())).encode())
    digest.update(f"{m.hashed.shape}:{m.hashed.nnz}:{float(m.dense.sum()):.6e}".encode())
    for ex in examples:
        digest.update("\0".join((ex.text, str(ex.label), ex.source, ex.mode, str(ex.trainable), ex.group)).encode())
    path = cache_dir / f"guardrails-oof-{digest.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as data:
            return {mode: data[mode] for mode in MODES}
    out = loso(examples, m, alphas)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, input=out["input"], content=out["content"])
    return out
