"""What every check returns (findings), how they become one decision, and how redaction rewrites the text."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# The decision is the strongest action among the findings.
ACTION_ORDER = ["allow", "flag", "redact", "block"]


@dataclass
class Finding:
    """One explainable finding: which detector, what kind, where in the text (character offsets), and why."""

    detector: str
    category: str
    start: int
    end: int
    score: float
    reason: str
    action: str = "flag"  # set from the policy once the detectors ran
    placeholder: str | None = None  # the entity type a redaction writes, e.g. EMAIL -> <EMAIL_1>

    def public(self) -> dict[str, object]:
        """The fields of the API's FindingOut."""
        data = asdict(self)
        data.pop("placeholder")
        return data


def decide(findings: list[Finding]) -> str:
    """allow < flag < redact < block: the strongest action wins."""
    return max((f.action for f in findings), key=ACTION_ORDER.index, default="allow")


def drop_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep the first finding of any overlapping pair (detectors run most specific first: an IBAN's digits
    must not also count as a card number)."""
    kept: list[Finding] = []
    for finding in findings:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return kept


class Placeholders:
    """Numbers per (entity type, value): the same value always gets the same number, across every text of
    one call, so a reader (or the model) can still tell that two mentions are the same person."""

    def __init__(self) -> None:
        self.numbers: dict[tuple[str, str], int] = {}
        self.counts: dict[str, int] = {}

    def name(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.numbers:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.numbers[key] = self.counts[kind]
        return f"<{kind}_{self.numbers[key]}>"


def redact(text: str, findings: list[Finding], placeholders: Placeholders | None = None) -> str:
    """Replace every redacted span with a typed placeholder (numbered by `placeholders`, shared by the
    messages of one call; a fresh numbering when None)."""
    placeholders = placeholders or Placeholders()
    spans = sorted((f for f in findings if f.action == "redact" and f.placeholder), key=lambda f: f.start)
    replacements = []
    for f in spans:
        assert f.placeholder is not None
        replacements.append((f.start, f.end, placeholders.name(f.placeholder, text[f.start : f.end])))
    # Right to left, so earlier offsets stay valid while we rewrite.
    for start, end, placeholder in reversed(replacements):
        text = text[:start] + placeholder + text[end:]
    return text
