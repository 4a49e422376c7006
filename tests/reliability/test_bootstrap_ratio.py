"""bench/bootstrap.py: the percentile ratio bench-swap reports, and its bootstrap interval."""

from __future__ import annotations

import random

import pytest

from bench.bootstrap import independent_ratio, paired_cluster_ratio


def test_identical_sides_give_ratio_one_and_an_interval_around_it() -> None:
    rng = random.Random(1)
    pairs = [([rng.uniform(50, 100) for _ in range(20)], [rng.uniform(50, 100) for _ in range(20)]) for _ in range(15)]
    result = paired_cluster_ratio(pairs, 50, n_boot=500)
    assert 0.9 < result["ratio"] < 1.1
    assert result["low"] <= result["ratio"] <= result["high"]
    assert result["low"] < 1 < result["high"]


def test_a_slower_side_is_outside_the_interval_of_one_and_same_seed_same_interval() -> None:
    rng = random.Random(2)
    pairs = [
        ([2 * rng.uniform(50, 100) for _ in range(20)], [rng.uniform(50, 100) for _ in range(20)]) for _ in range(15)
    ]
    first = paired_cluster_ratio(pairs, 50, n_boot=500, seed=7)
    assert first == paired_cluster_ratio(pairs, 50, n_boot=500, seed=7)
    assert 1.8 < first["ratio"] < 2.2 and first["low"] > 1.5


def test_one_stalled_window_widens_the_cluster_interval_more_than_the_independent_one() -> None:
    # 10 pairs of 20 requests at 100 ms; one swap window stalls every request to 300 ms: the pooled p99 is 3x.
    pairs = [([100.0] * 20, [100.0] * 20) for _ in range(9)] + [([300.0] * 20, [100.0] * 20)]
    cluster = paired_cluster_ratio(pairs, 99, n_boot=1000)
    independent = independent_ratio([v for a, _ in pairs for v in a], [v for _, b in pairs for v in b], 99, n_boot=1000)
    assert cluster["ratio"] == independent["ratio"] == 3.0
    assert cluster["low"] == 1.0  # resamples without the stalled window exist: one window is weak evidence
    assert independent["low"] == 3.0  # 20 stalled requests look like 20 independent facts


def test_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        paired_cluster_ratio([], 99)
    with pytest.raises(ValueError):
        independent_ratio([], [1.0], 99)
