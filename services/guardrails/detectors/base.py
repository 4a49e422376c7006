"""The detector interface: what every detector is given, what it returns, and how it is registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from services.guardrails.detector_config import DetectorPolicy
    from services.guardrails.detectors.loader import DetectorContext

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
    # Who wrote the text: the chat role of a message (None: a single `text` check, what a user sends). The
    # harmful-request detection reads only the roles its policy names (the end user's own words by default).
    role: str | None = None


class DetectorError(Exception):
    """A detector could not run; the policy's fail mode decides what that means."""


class Detector(Protocol):
    """What the checker needs from a detector. Register one in `loader.DETECTORS` (docs/extending.md)."""

    name: str

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """Findings in `inp.text` under the policy's settings (`config`: the settings class, dumped to a dict).

        The checker sets each finding's action from the policy; raise DetectorError (or anything) when the
        detector cannot run, and the policy's fail mode decides.
        """
        ...


class DetectorFactory(Protocol):
    """Builds a detector once per process from what the service shares (settings, the token embedder)."""

    def __call__(self, ctx: DetectorContext) -> Detector:
        """A detector ready to run."""
        ...


@dataclass(frozen=True)
class DetectorSpec:
    """One entry of `loader.DETECTORS`: the detector's typed policy settings, where it runs, how it is built."""

    settings: type[DetectorPolicy]
    # Policy sections the detector may appear in; content (documents, tool results) runs the input ones.
    modes: frozenset[Literal["input", "output"]]
    build: DetectorFactory


INPUT_AND_OUTPUT: frozenset[Literal["input", "output"]] = frozenset({"input", "output"})
INPUT_ONLY: frozenset[Literal["input", "output"]] = frozenset({"input"})
OUTPUT_ONLY: frozenset[Literal["input", "output"]] = frozenset({"output"})
