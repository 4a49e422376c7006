"""Policies, and the two checks the gateway calls: which detectors run, and what each finding does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from examples.minimal_guardrails.findings import Finding, decide, redact
from examples.minimal_guardrails.injection import detect_injection
from examples.minimal_guardrails.output_checks import detect_canaries, detect_schema_violation, detect_ungrounded
from examples.minimal_guardrails.sensitive import detect_sensitive


@dataclass
class Policy:
    """What a team gets: an action per finding category, and what the caller should do when we fail."""

    name: str
    actions: dict[str, str]
    fail_mode: str = "closed"  # the gateway blocks requests while this service is down or slower than timeout_ms
    timeout_ms: int = 250

    def public(self) -> dict[str, Any]:
        """The policy as GET /v1/policies/{team} shows it."""
        return {"name": self.name, "actions": self.actions}


DEFAULT_ACTIONS = {
    "prompt_injection": "block",
    "private_key": "block",
    "canary_leak": "block",
    "schema_violation": "block",
    "secret": "redact",
    "pii": "redact",
    "ungrounded": "flag",
}


def default_policies(timeout_ms: int) -> dict[str, Policy]:
    """`default` protects; `monitor` only reports (flags), for a team that wants to see before it blocks."""
    return {
        "default": Policy("default", dict(DEFAULT_ACTIONS), "closed", timeout_ms),
        "monitor": Policy("monitor", dict.fromkeys(DEFAULT_ACTIONS, "flag"), "open", timeout_ms),
    }


@dataclass
class OutputExtras:
    """What an output check may bring besides the answer."""

    canaries: list[str] = field(default_factory=list)
    context: list[str] | None = None
    schema: Draft202012Validator | None = None


def check(direction: str, text: str, policy: Policy, extras: OutputExtras | None = None) -> dict[str, Any]:
    """Run the detectors of one direction and turn their findings into the API's CheckResponse."""
    started = time.perf_counter()
    findings: list[Finding] = []
    if direction == "input":
        findings += detect_injection(text)
    findings += detect_sensitive(text)
    if extras is not None:
        findings += detect_canaries(text, extras.canaries)
        if extras.schema is not None:
            findings += detect_schema_violation(text, extras.schema)
        if extras.context:
            findings += detect_ungrounded(text, extras.context)
    for finding in findings:
        finding.action = policy.actions.get(finding.category, "flag")
    decision = decide(findings)
    return {
        "decision": decision,
        "text": redact(text, findings) if decision == "redact" else None,
        "findings": [f.public() for f in sorted(findings, key=lambda f: f.start)],
        "policy": policy.name,
        "fail_mode": policy.fail_mode,
        "timeout_ms": policy.timeout_ms,
        "errors": [],  # every detector here is plain code that cannot fail on valid input
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
