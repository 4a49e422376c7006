"""Bonus exercise: metrics for generative models and a curated fine-tuning set. See ../README.md."""

from __future__ import annotations


def perplexity(token_logprobs: list[float]) -> float:
    """exp of the negative mean natural-log probability of the tokens."""
    raise NotImplementedError("TODO")


def bleu(candidate: str, references: list[str], max_n: int = 4) -> float:
    """Sentence BLEU: geometric mean of clipped n-gram precisions (n=1..max_n) times the brevity penalty."""
    raise NotImplementedError("TODO")


def curate(rows: list[dict]) -> list[dict]:
    """Feedback rows -> chat fine-tuning examples (rules in the README)."""
    raise NotImplementedError("TODO")
