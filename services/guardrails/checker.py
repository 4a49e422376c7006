"""The check itself: run a policy's detectors over a text, apply actions, decide, redact.

Plain class with explicit inputs; the routes only translate HTTP to `Checker.check` and back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services.guardrails.detectors.base import ACTION_RANK, CheckInput, DetectorError, Finding
from services.guardrails.metrics import GuardrailsMetrics
from services.guardrails.policies import DetectorPolicy, Policy

log = logging.getLogger("llmops.guardrails")

# Placeholder names for redaction; anything else uses its entity or category upper-cased.
PLACEHOLDER = {"US_SSN": "SSN", "IP_ADDRESS": "IP", "CREDIT_CARD": "CARD"}


class Detector(Protocol):
    """What the checker needs from a detector."""

    name: str

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """Return findings (action is set by the checker from the policy)."""
        ...


@dataclass
class CheckResult:
    """A decision with everything needed to explain it."""

    decision: str
    text: str | None
    findings: list[Finding]
    policy: Policy
    latency_ms: float
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Response body of /v1/check/*."""
        return {
            "decision": self.decision,
            "text": self.text,
            "findings": [f.as_dict() for f in self.findings],
            "policy": self.policy.name,
            "fail_mode": self.policy.fail_mode,
            "timeout_ms": self.policy.timeout_ms,
            "errors": self.errors,
            "latency_ms": round(self.latency_ms, 3),
        }


def redact(text: str, findings: list[Finding]) -> str:
    """Replace redact-action spans with typed placeholders, the same value getting the same number."""
    numbering: dict[tuple[str, str], str] = {}
    counters: dict[str, int] = {}
    pieces: list[str] = []
    pos = 0
    for f in sorted((f for f in findings if f.action == "redact"), key=lambda f: (f.start, -f.end)):
        if f.start < pos:  # overlaps an earlier redaction: already hidden
            continue
        kind = PLACEHOLDER.get(f.entity or "", f.entity or f.category).upper()
        value = text[f.start : f.end]
        if (kind, value) not in numbering:
            counters[kind] = counters.get(kind, 0) + 1
            numbering[(kind, value)] = f"<{kind}_{counters[kind]}>"
        pieces.append(text[pos : f.start])
        pieces.append(numbering[(kind, value)])
        pos = f.end
    pieces.append(text[pos:])
    return "".join(pieces)


class Checker:
    """Holds the detectors (loaded once) and runs them under a policy."""

    def __init__(self, detectors: dict[str, dict[str, Detector]], metrics: GuardrailsMetrics) -> None:
        self.detectors = detectors  # direction -> name -> detector
        self.metrics = metrics

    def _apply_policy(self, findings: list[Finding], cfg: DetectorPolicy) -> list[Finding]:
        kept = []
        for f in findings:
            if f.score < cfg.min_score:
                continue
            f.action = cfg.actions.get(f.entity or "", cfg.actions.get(f.category, cfg.action))
            kept.append(f)
        return kept

    def _failure(self, name: str, policy: Policy, text: str, why: str) -> Finding:
        closed = policy.fail_mode == "closed"
        reason = f"detector failed ({why}); policy is fail-{policy.fail_mode}" + (
            ", so the text is blocked" if closed else ""
        )
        return Finding(name, "detector_error", 0, len(text), 1.0, reason, action="block" if closed else "allow")

    def check(self, direction: Literal["input", "output"], inp: CheckInput, policy: Policy) -> CheckResult:
        """Run every enabled detector of the policy for this direction and decide."""
        started = time.perf_counter()
        deadline = started + policy.timeout_ms / 1000
        findings: list[Finding] = []
        errors: list[str] = []
        available = self.detectors[direction]
        for name, cfg in getattr(policy, direction).items():
            detector = available.get(name)
            if not cfg.enabled or detector is None:
                continue
            if policy.stop_on_block and any(f.action == "block" for f in findings):
                break
            if time.perf_counter() > deadline:
                errors.append(f"{name}: check exceeded timeout_ms={policy.timeout_ms} before this detector ran")
                findings.append(self._failure(name, policy, inp.text, "timeout"))
                continue
            t0 = time.perf_counter()
            try:
                found = self._apply_policy(detector.run(inp, cfg.model_dump()), cfg)
            except Exception as exc:  # the fail mode is the policy's answer to *any* detector fault
                log.warning("detector %s failed", name, exc_info=not isinstance(exc, DetectorError))
                self.metrics.detector_errors.labels(name).inc()
                errors.append(f"{name}: {exc}")
                found = [self._failure(name, policy, inp.text, str(exc) or type(exc).__name__)]
            self.metrics.detector_latency.labels(direction, name).observe(time.perf_counter() - t0)
            findings.extend(found)
        decision = max((f.action for f in findings), key=ACTION_RANK.__getitem__, default="allow")
        text = redact(inp.text, findings) if decision == "redact" else None
        latency = time.perf_counter() - started
        self.metrics.observe(direction, policy.name, decision, findings, latency)
        return CheckResult(
            decision, text, sorted(findings, key=lambda f: (f.start, f.end)), policy, latency * 1000, errors
        )
