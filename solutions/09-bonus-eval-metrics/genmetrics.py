"""Bonus exercise (reference solution): perplexity, sentence BLEU and dataset curation."""

from __future__ import annotations

import math
import re
from collections import Counter

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")


def perplexity(token_logprobs: list[float]) -> float:
    """exp of the negative mean natural-log probability of the tokens."""
    if not token_logprobs:
        raise ValueError("no tokens")
    return math.exp(-sum(token_logprobs) / len(token_logprobs))


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(candidate: str, references: list[str], max_n: int = 4) -> float:
    """Sentence BLEU: geometric mean of clipped n-gram precisions (n=1..max_n) times the brevity penalty."""
    cand = candidate.lower().split()
    refs = [r.lower().split() for r in references]
    if not cand or not refs:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        counts = _ngrams(cand, n)
        total = sum(counts.values())
        if total == 0:
            return 0.0
        best: Counter = Counter()
        for ref in refs:
            best |= _ngrams(ref, n)  # max count of each n-gram over the references (clipping)
        clipped = sum(min(c, best[g]) for g, c in counts.items())
        if clipped == 0:
            return 0.0
        log_sum += math.log(clipped / total)
    # Brevity penalty against the reference length closest to the candidate's (shorter wins ties).
    r = min((abs(len(ref) - len(cand)), len(ref)) for ref in refs)[1]
    bp = 1.0 if len(cand) > r else math.exp(1 - r / len(cand))
    return bp * math.exp(log_sum / max_n)


def curate(rows: list[dict]) -> list[dict]:
    """Feedback rows -> chat fine-tuning examples (rules in the README)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        answer = row.get("corrected_answer") or (row.get("response") if (row.get("rating") or 0) >= 4 else None)
        prompt = row.get("prompt") or ""
        if not answer or not prompt.strip() or _EMAIL.search(prompt) or _EMAIL.search(answer):
            continue
        key = " ".join(prompt.lower().split())
        if key in seen:
            continue
        seen.add(key)
        out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
    return out
