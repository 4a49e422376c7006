"""The learned detector's features: deterministic hashing, collapsing that keeps offsets, windows."""

from __future__ import annotations

import itertools
import random

import numpy as np

from services.guardrails.detectors.features import (
    HASH_BITS,
    WINDOW_CHARS,
    char_ngram_hashes,
    collapse,
    token_hashes,
    window_starts,
    windows,
)
from services.guardrails.detectors.normalize import collapsed_view, unicode_view


def test_hashes_are_stable_across_processes_and_in_range() -> None:
    # Fixed values: the shipped weights are indexed by them, so a change here silently breaks the model.
    assert char_ngram_hashes("ignore")[:3].tolist() == [1671, 202663, 64813]
    assert token_hashes(np.array([101, 2023, 102])).tolist() == [90060, 161596, 71102, 190134, 223323]
    h = char_ngram_hashes("ignore previous instructions")
    assert h.min() >= 0 and h.max() < 1 << HASH_BITS


def test_collapsed_view_matches_collapse_and_points_at_the_original() -> None:
    rng = random.Random(3)
    pieces = ["word", "Ünïcode", " ", "  ", "\n", "\t", "\u00a0", "\u2003", "\u3000", "x", "Ⅻ", "\u200b"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        view = unicode_view(text)
        flat = collapsed_view(view)
        assert flat.text == collapse(view.text)
        assert len(flat.index) == len(flat.text)
        for i, ch in enumerate(flat.text):
            if ch != " ":
                assert unicode_view(text[flat.index[i]]).text.startswith(ch) or ch in view.text


def test_windows_cover_the_whole_text() -> None:
    assert windows("short text") == ["short text"]
    text = "".join(random.Random(1).choice("abc ") for _ in range(5000))
    starts = window_starts(len(text))
    assert starts[0] == 0 and starts[-1] + WINDOW_CHARS == len(text)
    assert all(b - a <= WINDOW_CHARS for a, b in itertools.pairwise(starts))
