"""The tests `make check-exercise N=bonus` runs against your work/genmetrics.py (EXERCISE_MODULE points at it)."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

_path = Path(os.environ.get("EXERCISE_MODULE", Path(__file__).parent / "work" / "genmetrics.py"))
_spec = importlib.util.spec_from_file_location("learner_genmetrics", _path)
m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(m)


def test_perplexity_uniform():
    # Every token had probability 1/4: perplexity is 4 ("as unsure as a fair 4-sided die").
    assert m.perplexity([math.log(0.25)] * 10) == pytest.approx(4.0)


def test_perplexity_mixed():
    assert m.perplexity([-1.0, -2.0, -3.0]) == pytest.approx(math.exp(2.0))


def test_bleu_identical_is_one():
    assert m.bleu("the cat sat on the mat", ["the cat sat on the mat"]) == pytest.approx(1.0)


def test_bleu_hand_computed():
    # p1=5/6, p2=3/5, p3=2/4, p4=1/3, same length -> BP=1
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert m.bleu("the cat sat on a mat", ["the cat sat on the mat"]) == pytest.approx(expected)


def test_bleu_clips_repeated_words():
    # "the the the the the the": unigram matches are clipped to 2 ("the" appears twice in the reference)
    assert m.bleu("the the the the the the", ["the cat sat on the mat"], max_n=1) == pytest.approx(2 / 6)


def test_bleu_brevity_penalty():
    # all 4 unigrams match, but the candidate is shorter than the reference (4 vs 6): BP = exp(1 - 6/4)
    assert m.bleu("the cat sat on", ["the cat sat on the mat"], max_n=1) == pytest.approx(math.exp(1 - 6 / 4))


def test_bleu_multiple_references_take_the_best_counts():
    assert m.bleu("a b", ["a x", "x b"], max_n=1) == pytest.approx(1.0)


def test_bleu_no_overlap_is_zero():
    assert m.bleu("completely different words here", ["the cat sat on the mat"]) == 0.0


ROWS = [
    {"prompt": "How long is the refund window?", "response": "7 days", "rating": 2, "corrected_answer": "30 days."},
    {"prompt": "What is a virtual key?", "response": "A per-team API key.", "rating": 5, "corrected_answer": None},
    {"prompt": "what is a   VIRTUAL key?", "response": "A key.", "rating": 5, "corrected_answer": None},
    {"prompt": "Say hi", "response": "hi", "rating": 3, "corrected_answer": None},
    {"prompt": "Mail bob@example.com the report", "response": "Done.", "rating": 5, "corrected_answer": None},
    {"prompt": "Who approves promotions?", "response": "A reviewer, not the requester.", "rating": 4},
    {"prompt": "Bad one", "response": "nonsense", "rating": 1, "corrected_answer": None},
    {"prompt": "", "response": "empty prompt", "rating": 5, "corrected_answer": None},
]


def test_curate_rules():
    out = m.curate(ROWS)
    pairs = [(ex["messages"][0]["content"], ex["messages"][1]["content"]) for ex in out]
    assert pairs == [
        ("How long is the refund window?", "30 days."),  # the user's correction wins over a bad answer
        ("What is a virtual key?", "A per-team API key."),  # the near-duplicate after it is dropped
        ("Who approves promotions?", "A reviewer, not the requester."),
    ]
    for ex in out:
        assert [msg["role"] for msg in ex["messages"]] == ["user", "assistant"]
