"""The check itself: run a policy's detectors over a text (or every message of a request), apply actions,
decide, redact.

Plain class with explicit inputs; the routes only translate HTTP to `Checker.check`/`check_many` and back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from services.guardrails.detectors.base import ACTION_RANK, CheckInput, Detector, DetectorError, Finding
from services.guardrails.metrics import GuardrailsMetrics
from services.guardrails.policies import DetectorPolicy, Mode, Policy
from services.guardrails.verdict_cache import VerdictCache

log = logging.getLogger("llmops.guardrails")

# Placeholder names for redaction; anything else uses its entity or category upper-cased.
PLACEHOLDER = {"US_SSN": "SSN", "IP_ADDRESS": "IP", "CREDIT_CARD": "CARD", "ORGANIZATION": "ORG"}


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
        """Response body of /v1/check/* for one text."""
        return {
            "decision": self.decision,
            "text": self.text,
            "findings": [f.as_dict() for f in self.findings],
            "policy": self.policy.name,
            "fail_mode": self.policy.fail_mode,
            "timeout_ms": self.policy.timeout_ms,
            "errors": self.errors,
            "latency_ms": round(self.latency_ms, 3),
            "messages": None,  # the wire shape of CheckResponse: the routes send this dict as it is
        }


@dataclass
class ItemResult:
    """The verdict on one text of a multi-text check (a chat message, a document)."""

    index: int
    decision: str
    text: str | None
    findings: list[Finding]

    def findings_dicts(self) -> list[dict[str, Any]]:
        """Findings in wire shape, each naming the text it belongs to."""
        return [{**f.as_dict(), "message": self.index} for f in self.findings]


@dataclass
class BatchResult:
    """One call's verdict over many texts: the strongest decision, and each text's own."""

    decision: str
    items: list[ItemResult]
    policy: Policy
    latency_ms: float
    errors: list[str] = field(default_factory=list)

    def _common(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "policy": self.policy.name,
            "fail_mode": self.policy.fail_mode,
            "timeout_ms": self.policy.timeout_ms,
            "errors": self.errors,
            "latency_ms": round(self.latency_ms, 3),
        }

    def as_messages_dict(self) -> dict[str, Any]:
        """Response of /v1/check/input with `messages`."""
        return {
            **self._common(),
            "text": None,
            "findings": [f for item in self.items for f in item.findings_dicts()],
            "messages": [{"index": i.index, "decision": i.decision, "text": i.text} for i in self.items],
        }

    def as_content_dict(self) -> dict[str, Any]:
        """Response of /v1/check/content."""
        return {
            **self._common(),
            "results": [
                {"index": i.index, "decision": i.decision, "findings": i.findings_dicts(), "text": i.text}
                for i in self.items
            ],
        }


class Redactor:
    """Typed placeholders numbered per call: the same value gets the same number in every message."""

    def __init__(self) -> None:
        self.numbering: dict[tuple[str, str], str] = {}
        self.counters: dict[str, int] = {}

    def __call__(self, text: str, findings: list[Finding]) -> str:
        """Replace redact-action spans with placeholders such as <EMAIL_1>."""
        pieces: list[str] = []
        pos = 0
        for f in sorted((f for f in findings if f.action == "redact"), key=lambda f: (f.start, -f.end)):
            if f.start < pos:  # overlaps an earlier redaction: already hidden
                continue
            kind = PLACEHOLDER.get(f.entity or "", f.entity or f.category).upper()
            value = text[f.start : f.end]
            if (kind, value) not in self.numbering:
                self.counters[kind] = self.counters.get(kind, 0) + 1
                self.numbering[(kind, value)] = f"<{kind}_{self.counters[kind]}>"
            pieces.append(text[pos : f.start])
            pieces.append(self.numbering[(kind, value)])
            pos = f.end
        pieces.append(text[pos:])
        return "".join(pieces)


def redact(text: str, findings: list[Finding]) -> str:
    """Replace redact-action spans with typed placeholders, the same value getting the same number."""
    return Redactor()(text, findings)


def chat_items(messages: list[tuple[str, str, bool]], policy: Policy) -> list[tuple[Mode, CheckInput]]:
    """The texts of a chat request, (role, text, marked as retrieved context), as the checker judges them:
    marked context and the roles the policy maps to content (tool results) in content mode (indirect
    injection), the rest in input mode; each keeps its role (the harmful-request model reads only the roles
    its policy names: by default the end user's own words, not an application's system template)."""
    return [
        ("content" if context else policy.role_mode(role), CheckInput(text=text, direction="input", role=role))
        for role, text, context in messages
    ]


def _strongest(findings: list[Finding]) -> str:
    return max((f.action for f in findings), key=ACTION_RANK.__getitem__, default="allow")


class Checker:
    """Holds the detectors (loaded once) and runs them under a policy."""

    def __init__(
        self, detectors: dict[str, dict[str, Detector]], metrics: GuardrailsMetrics, cache: VerdictCache | None = None
    ) -> None:
        self.detectors = detectors  # "input" | "output" -> name -> detector (content runs the input ones)
        self.metrics = metrics
        self.cache = cache  # input and content verdicts by text digest (output depends on context too)

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

    def _run(
        self, mode: Mode, inp: CheckInput, policy: Policy, deadline: float, errors: list[str], spent: dict[str, float]
    ) -> list[Finding]:
        """Every enabled detector of the mode over one text, within the call's deadline (time added to `spent`)."""
        inp.mode = mode
        findings: list[Finding] = []
        available = self.detectors["output" if mode == "output" else "input"]
        for name, cfg, config in policy.plan(mode):
            detector = available.get(name)
            if detector is None:
                continue
            if policy.stop_on_block and any(f.action == "block" for f in findings):
                break
            if time.perf_counter() > deadline:
                self._timed_out(name, mode)
                errors.append(f"{name}: check exceeded timeout_ms={policy.timeout_ms} before this detector ran")
                findings.append(self._failure(name, policy, inp.text, "timeout"))
                continue
            t0 = time.perf_counter()
            try:
                found = self._apply_policy(detector.run(inp, config), cfg)
            except Exception as exc:  # the fail mode is the policy's answer to *any* detector fault
                log.warning("detector %s failed", name, exc_info=not isinstance(exc, DetectorError))
                self.metrics.detector_errors.labels(name).inc()
                errors.append(f"{name}: {exc}")
                found = [self._failure(name, policy, inp.text, str(exc) or type(exc).__name__)]
            finished = time.perf_counter()
            spent[name] = spent.get(name, 0.0) + finished - t0
            if finished > deadline:  # too late for a caller that waits timeout_ms: never silently accepted
                self._timed_out(name, mode)
                took_ms = (finished - t0) * 1000
                errors.append(f"{name}: took {took_ms:.0f} ms, past the check's timeout_ms={policy.timeout_ms}")
                found.append(self._failure(name, policy, inp.text, "timeout"))
            findings.extend(found)
        return findings

    def _judge(
        self, mode: Mode, inp: CheckInput, policy: Policy, deadline: float, errors: list[str], spent: dict[str, float]
    ) -> list[Finding]:
        """`_run`, or the findings of the same text under the same policy from the verdict cache."""
        if self.cache is None or mode == "output":
            return self._run(mode, inp, policy, deadline, errors, spent)
        # The role is part of the key: the same words judged as a user's or as the application's template
        # may differ (the harmful-request model reads the roles its policy names).
        key = self.cache.key(policy.fingerprint, mode if inp.role is None else f"{mode}/{inp.role}", inp.text)
        found = self.cache.get(key)
        if found is not None:
            self.metrics.cache_hits.labels(mode).inc()
            return found
        before = len(errors)
        found = self._run(mode, inp, policy, deadline, errors, spent)
        if len(errors) == before:  # a failure or a timeout is not a verdict: the next call tries again
            self.cache.put(key, found)
        return found

    def _observe_detectors(self, mode: str, spent: dict[str, float]) -> None:
        # One observation per detector per call (all its messages): per message, a 1,000-message call
        # would spend more time in the metrics client than in the cheap detectors.
        for name, seconds in spent.items():
            self.metrics.detector_latency.labels(mode, name).observe(seconds)

    def _timed_out(self, name: str, mode: str) -> None:
        self.metrics.detector_errors.labels(name).inc()
        self.metrics.detector_timeouts.labels(mode, name).inc()

    def check(self, mode: Mode, inp: CheckInput, policy: Policy) -> CheckResult:
        """Run every enabled detector of the policy for this mode over one text and decide."""
        started = time.perf_counter()
        errors: list[str] = []
        spent: dict[str, float] = {}
        findings = self._judge(mode, inp, policy, started + policy.timeout_ms / 1000, errors, spent)
        self._observe_detectors(mode, spent)
        decision = _strongest(findings)
        text = redact(inp.text, findings) if decision == "redact" else None
        latency = time.perf_counter() - started
        self.metrics.observe(mode, policy.name, decision, findings, latency)
        return CheckResult(
            decision, text, sorted(findings, key=lambda f: (f.start, f.end)), policy, latency * 1000, errors
        )

    def check_many(self, items: list[tuple[Mode, CheckInput]], policy: Policy, kind: str) -> BatchResult:
        """One bounded check over many texts (a chat request's messages, a batch of documents).

        One deadline (the policy's timeout_ms) covers the whole call: a text reached after it is not
        read and gets the fail mode, so thousands of messages cost at most one check's budget.
        """
        started = time.perf_counter()
        deadline = started + policy.timeout_ms / 1000
        errors: list[str] = []
        redactor = Redactor()
        results: list[ItemResult] = []
        late: list[int] = []
        spent: dict[str, dict[str, float]] = {}
        # Detectors are pure functions of (text, mode, policy): a repeated message (a resent history, or
        # 30,000 copies of one letter) is judged once per call.
        seen: dict[tuple[str, str | None, str], list[Finding]] = {}
        for index, (mode, inp) in enumerate(items):
            found = seen.get((mode, inp.role, inp.text)) if inp.text else []
            if found is None and time.perf_counter() > deadline:
                late.append(index)
                found = [self._failure("checker", policy, inp.text, "timeout: not read")]
            elif found is None:
                found = self._judge(mode, inp, policy, deadline, errors, spent.setdefault(mode, {}))
                seen[(mode, inp.role, inp.text)] = found
            decision = _strongest(found)
            text = redactor(inp.text, found) if decision == "redact" else None
            results.append(ItemResult(index, decision, text, sorted(found, key=lambda f: (f.start, f.end))))
        for section, per_detector in spent.items():
            self._observe_detectors(section, per_detector)
        if late:
            self._timed_out("checker", kind)
            errors.append(
                f"checker: timeout_ms={policy.timeout_ms} spent before {len(late)} of {len(items)} texts were read "
                f"(first: {late[0]})"
            )
        all_findings = [f for r in results for f in r.findings]
        decision = max((r.decision for r in results), key=ACTION_RANK.__getitem__, default="allow")
        latency = time.perf_counter() - started
        self.metrics.observe(kind, policy.name, decision, all_findings, latency)
        return BatchResult(decision, results, policy, latency * 1000, errors)
