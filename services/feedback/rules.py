"""Rules that decide which requests go to the labeling queue, and how a refusal is recognised."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.feedback.events import TraceEvent, is_guardrail_flagged

# English refusal openers of instruction-tuned models; a rough signal, good enough for a rate that drifts.
_REFUSAL = re.compile(
    r"\b(i('m| am) (sorry|unable|not able)|i can(no|')t (help|assist|provide|do)|i cannot|i won't|"
    r"as an ai( language model)?|i must decline|i'm not allowed)\b",
    re.IGNORECASE,
)

# Why an item is queued, and how much that reason weighs when choosing the next item.
REASON_PRIORITY = {
    "negative_feedback": 3,
    "guardrail_flag": 2,
    "low_retrieval_score": 2,
    "low_confidence": 1,
}


def is_refusal(response: str | None) -> bool:
    """True when the response opens like a refusal (checked on its first 300 characters)."""
    return bool(response) and bool(_REFUSAL.search(response[:300]))  # type: ignore[index]


def max_retrieval_score(event: TraceEvent) -> float | None:
    """The best retrieval score of the request, or None without retrieval."""
    return max((c.score for c in event.retrieval), default=None)


@dataclass(frozen=True)
class LabelRules:
    """Thresholds of the rules applied to each ingested event (negative feedback is applied on feedback)."""

    low_retrieval_score: float
    low_logprob: float

    def reasons(self, event: TraceEvent) -> list[str]:
        """Reasons this event deserves a human label; empty when it does not."""
        reasons = []
        if is_guardrail_flagged(event):
            reasons.append("guardrail_flag")
        best = max_retrieval_score(event)
        if best is not None and best < self.low_retrieval_score:
            reasons.append("low_retrieval_score")
        if event.mean_logprob is not None and event.mean_logprob < self.low_logprob:
            reasons.append("low_confidence")
        return reasons


def priority(reasons: list[str]) -> int:
    """Sum of the reasons' weights: the queue serves the highest first."""
    return sum(REASON_PRIORITY.get(r, 1) for r in reasons)
