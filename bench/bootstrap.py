"""A percentile ratio (e.g. p99 during swaps / p99 at baseline) with a bootstrap confidence interval.

On a shared machine absolute latencies say little; a ratio measured in one run does, but a p99 of a few hundred
requests is close to their largest values, so the ratio needs its interval beside it.

Two resampling schemes:
- `paired_cluster_ratio`: the unit is a pair of windows (one swap window, the baseline window measured right after
  it, same length). A stall hits every request in a window, and the neighbours' load drifts over minutes, so the
  requests are not independent; resampling whole pairs keeps both effects in the interval. This is the one to quote.
- `independent_ratio`: requests resampled one by one on each side; narrower, and optimistic for the reasons above.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from bench.common import percentile

Pair = tuple[Sequence[float], Sequence[float]]  # (values in the window of interest, values in its baseline)


def _interval(ratios: list[float], point: float, confidence: float, n_boot: int) -> dict[str, Any]:
    finite = sorted(r for r in ratios if math.isfinite(r))
    tail = (1 - confidence) / 2 * 100
    return {
        "ratio": round(point, 3),
        "low": round(percentile(finite, tail), 3),
        "high": round(percentile(finite, 100 - tail), 3),
        "confidence": confidence,
        "resamples": n_boot,
    }


def _ratio(numerator: Sequence[float], denominator: Sequence[float], q: float) -> float:
    below = percentile(list(denominator), q)
    return percentile(list(numerator), q) / below if numerator and below > 0 else math.nan


def paired_cluster_ratio(
    pairs: Sequence[Pair], q: float, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Percentile q of the pooled first sides / percentile q of the pooled second sides, with a percentile
    bootstrap interval that resamples whole pairs with replacement (seeded: the same data give the same interval)."""
    if not pairs:
        raise ValueError("no pairs to resample")
    rng = random.Random(seed)
    point = _ratio([v for a, _ in pairs for v in a], [v for _, b in pairs for v in b], q)
    ratios = []
    for _ in range(n_boot):
        drawn = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        ratios.append(_ratio([v for a, _ in drawn for v in a], [v for _, b in drawn for v in b], q))
    return _interval(ratios, point, confidence, n_boot)


def independent_ratio(
    numerator: Sequence[float],
    denominator: Sequence[float],
    q: float,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The same ratio, resampling single values on each side independently (assumes independent requests)."""
    if not numerator or not denominator:
        raise ValueError("nothing to resample")
    rng = random.Random(seed)
    ratios = [
        _ratio(rng.choices(numerator, k=len(numerator)), rng.choices(denominator, k=len(denominator)), q)
        for _ in range(n_boot)
    ]
    return _interval(ratios, _ratio(numerator, denominator, q), confidence, n_boot)
