"""`mean_logprob`: how sure the model was of its own answer, as one number in `usage` (a platform extension).

A request that sets `"mean_logprob": true` (the gateway does, internally, on routes whose routes.yaml says
`mean_logprob: true`; it refuses the field from its own clients) gets `usage.mean_logprob`: the mean natural-log
probability of the generated tokens, the signal of the feedback service's low-confidence labeling rule. To get it
the engine is asked for the sampled tokens' log-probabilities (OpenAI `logprobs`; llama.cpp's `n_probs`), which are
then taken out of the answer again unless the caller asked for `logprobs` itself: one number travels, not a list
per token. An engine that returns no log-probabilities leaves `mean_logprob` out (unknown, never a guess).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.inference.engines.base import Kind

FIELD = "mean_logprob"


class LogprobMean:
    """Sums the generated tokens' log-probabilities over a whole answer (all chunks of a stream)."""

    def __init__(self, strip: bool) -> None:
        self.strip = strip  # the caller did not ask for per-token logprobs: remove them from what it gets
        self.total = 0.0
        self.count = 0

    def add(self, choices: Iterable[dict[str, Any]]) -> None:
        """Count the tokens of these choices (an answer's, or one chunk's); strip their logprobs when not asked."""
        for choice in choices:
            logprobs = choice.pop("logprobs", None) if self.strip else choice.get("logprobs")
            for value in token_logprobs(logprobs):
                self.total += value
                self.count += 1

    def value(self) -> float | None:
        """The mean, or None when the engine gave no log-probabilities."""
        return round(self.total / self.count, 6) if self.count else None

    def into(self, usage: dict[str, Any] | None) -> None:
        """Write the mean into a usage object (when there is one to report)."""
        mean = self.value()
        if usage is not None and mean is not None:
            usage[FIELD] = mean


def token_logprobs(logprobs: Any) -> list[float]:
    """The sampled tokens' log-probabilities of one choice: OpenAI chat's (and llama.cpp's) `content` list, or
    legacy completions' `token_logprobs` (vLLM)."""
    if not isinstance(logprobs, dict):
        return []
    if isinstance(logprobs.get("content"), list):
        values = [entry.get("logprob") for entry in logprobs["content"] if isinstance(entry, dict)]
    else:
        values = list(logprobs.get("token_logprobs") or ())
    return [float(v) for v in values if isinstance(v, int | float)]


def engine_request(kind: Kind, payload: dict[str, Any]) -> LogprobMean | None:
    """Take `mean_logprob` out of the payload; when it was asked for, ask the engine for the sampled tokens'
    logprobs (the fewest alternatives it allows: llama.cpp returns none at all for `top_logprobs: 0`)."""
    if not payload.pop(FIELD, None):
        return None
    if payload.get("logprobs"):
        return LogprobMean(strip=False)  # the caller asked for them: they stay in the answer
    if kind == "chat":
        payload.update(logprobs=True, top_logprobs=1)
    else:
        payload["logprobs"] = 1
    return LogprobMean(strip=True)
