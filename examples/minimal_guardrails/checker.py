"""Policies, and the two checks the gateway calls: which detectors run, and what each finding does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from examples.minimal_guardrails.findings import ACTION_ORDER, Finding, Placeholders, decide, redact
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


def _findings(direction: str, text: str, policy: Policy, extras: OutputExtras | None) -> list[Finding]:
    """Run the detectors of one direction and set each finding's action from the policy."""
    findings: list[Finding] = []
    if direction in ("input", "content"):
        # Content (documents, tool results) is text the model reads: the same override rules catch
        # instructions hidden in it (indirect injection).
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
    return sorted(findings, key=lambda f: f.start)


def _envelope(policy: Policy, decision: str, started: float, **fields: Any) -> dict[str, Any]:
    return {
        "decision": decision,
        **fields,
        "policy": policy.name,
        "fail_mode": policy.fail_mode,
        "timeout_ms": policy.timeout_ms,
        "errors": [],  # every detector here is plain code that cannot fail on valid input
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def check(direction: str, text: str, policy: Policy, extras: OutputExtras | None = None) -> dict[str, Any]:
    """One text (`{"text": ...}` form): the API's CheckResponse."""
    started = time.perf_counter()
    findings = _findings(direction, text, policy, extras)
    decision = decide(findings)
    return _envelope(
        policy,
        decision,
        started,
        text=redact(text, findings) if decision == "redact" else None,
        findings=[f.public() for f in findings],
    )


def check_messages(messages: list[tuple[str, str]], policy: Policy) -> dict[str, Any]:
    """Every message of a chat request, in one call: `tool` messages in content mode, the others in input mode.
    The decision is the strongest over all messages; findings name their message; placeholders are shared."""
    started = time.perf_counter()
    placeholders = Placeholders()
    all_findings: list[dict[str, Any]] = []
    per_message: list[dict[str, Any]] = []
    for index, (role, content) in enumerate(messages):
        findings = _findings("content" if role == "tool" else "input", content, policy, None)
        decision = decide(findings)
        text = redact(content, findings, placeholders) if decision == "redact" else None
        per_message.append({"index": index, "decision": decision, "text": text})
        all_findings += [{**f.public(), "message": index} for f in findings]
    decision = max((m["decision"] for m in per_message), key=ACTION_ORDER.index, default="allow")
    return _envelope(policy, decision, started, text=None, findings=all_findings, messages=per_message)


def check_contents(texts: list[str], policy: Policy) -> dict[str, Any]:
    """Documents, retrieved chunks, tool results: each text in content mode, one result per text."""
    started = time.perf_counter()
    placeholders = Placeholders()
    results: list[dict[str, Any]] = []
    for index, text in enumerate(texts):
        findings = _findings("content", text, policy, None)
        decision = decide(findings)
        results.append(
            {
                "index": index,
                "decision": decision,
                "findings": [f.public() for f in findings],
                "text": redact(text, findings, placeholders) if decision == "redact" else None,
            }
        )
    decision = max((r["decision"] for r in results), key=ACTION_ORDER.index, default="allow")
    return _envelope(policy, decision, started, results=results)
