"""What every detector returns, and what it is given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["allow", "flag", "redact", "block"]
ACTION_RANK: dict[str, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


@dataclass
class Finding:
    """One explainable reason for a decision: who found what, where, how sure, and what to do about it."""

    detector: str
    category: str
    start: int
    end: int
    score: float
    reason: str
    action: Action = "flag"
    entity: str | None = None  # placeholder type for redaction (EMAIL -> <EMAIL_1>)

    def as_dict(self) -> dict[str, Any]:
        """The wire shape of a finding."""
        return {
            "detector": self.detector,
            "category": self.category,
            "start": self.start,
            "end": self.end,
            "score": round(float(self.score), 4),
            "reason": self.reason,
            "action": self.action,
        }


@dataclass
class CheckInput:
    """Everything a detector may look at for one check."""

    text: str
    direction: Literal["input", "output"]
    prompt: str | None = None
    context: list[str] | None = None
    json_schema: dict[str, Any] | None = None
    canaries: list[str] | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # shared per-check memo (e.g. normalised views)
    # input: what a user says (direct injection); content: what the model reads (documents, e-mails, tool
    # results: indirect injection); output: the model's answer. Detectors that care score each differently.
    mode: Literal["input", "content", "output"] = "input"


class DetectorError(Exception):
    """A detector could not run; the policy's fail mode decides what that means."""
