"""The gateway's side of the guardrails service: input checks before routing, output checks after
generation (a sliding window for streams), and the team's fail mode when the service is down or slow."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

from llmops_common.errors import APIError
from llmops_common.telemetry import inject_trace_headers
from services.gateway.metrics import GatewayMetrics

FailMode = Literal["open", "closed"]
_POLICY_TTL_S = 30.0


@dataclass
class Verdict:
    """One check's outcome as the trace event records it."""

    stage: str
    decision: str  # allow | flag | redact | block | unavailable
    findings: list[dict[str, Any]] = field(default_factory=list)
    text: str | None = None

    def as_event(self) -> dict[str, Any]:
        """The shape stored in trace events."""
        return {"stage": self.stage, "decision": self.decision, "findings": self.findings}


def blocked_error(stage: str, findings: list[dict[str, Any]]) -> APIError:
    """The 400 a block decision becomes, with every reason."""
    reasons = [f"{f.get('detector')}: {f.get('reason')}" for f in findings if f.get("action") == "block"]
    return APIError(
        400,
        "guardrail_blocked",
        f"the {stage} was blocked by the guardrails: " + ("; ".join(reasons) or "policy decision"),
        extra={"stage": stage, "findings": findings},
    )


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message (string content or text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class GuardrailsClient:
    """Calls POST /v1/check/{input,output}; every call is bounded by the team's timeout."""

    def __init__(self, base_url: str, timeout_ms: int, default_fail_mode: FailMode, metrics: GatewayMetrics) -> None:
        self.base_url = base_url.rstrip("/")
        self.default_timeout_s = timeout_ms / 1000
        self.default_fail_mode = default_fail_mode
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._policies: dict[str, tuple[float, FailMode, float]] = {}

    async def start(self) -> None:
        """Open the connection pool."""
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def _policy(self, team: str) -> tuple[FailMode, float]:
        """The team's fail mode and timeout (cached; the gateway's defaults when the service cannot say)."""
        cached = self._policies.get(team)
        if cached and time.monotonic() - cached[0] < _POLICY_TTL_S:
            return cached[1], cached[2]
        fail_mode, timeout_s = self.default_fail_mode, self.default_timeout_s
        try:
            assert self._session is not None
            async with self._session.get(
                f"{self.base_url}/v1/policies/{team}", timeout=aiohttp.ClientTimeout(total=self.default_timeout_s)
            ) as resp:
                if resp.status == 200:
                    data = await resp.json(loads=orjson.loads)
                    fail_mode = data.get("fail_mode", fail_mode)
                    timeout_s = data.get("timeout_ms", timeout_s * 1000) / 1000
                    self._policies[team] = (time.monotonic(), fail_mode, timeout_s)
        except (aiohttp.ClientError, TimeoutError):
            pass  # keep the defaults; not cached, so the next request asks again
        return fail_mode, timeout_s

    async def check(self, stage: str, text: str, team: str, project: str, **extra: Any) -> Verdict:
        """One check; applies the fail mode when the service errors or is too slow (never hangs)."""
        fail_mode, timeout_s = await self._policy(team)
        started = time.perf_counter()
        body = {"text": text, "team": team, "project": project, **{k: v for k, v in extra.items() if v}}
        try:
            assert self._session is not None
            async with self._session.post(
                f"{self.base_url}/v1/check/{stage}",
                data=orjson.dumps(body),
                headers=inject_trace_headers({"content-type": "application/json"}),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                data = await resp.json(loads=orjson.loads, content_type=None)
                if resp.status != 200:
                    raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            self.metrics.guardrail_checks.labels(stage, "unavailable").inc()
            self.metrics.guardrail_failures.labels(stage, fail_mode).inc()
            if fail_mode == "closed":
                raise APIError(
                    503,
                    "guardrails_unavailable",
                    f"the guardrails service did not answer the {stage} check ({type(exc).__name__}) and this "
                    "team's policy is fail-closed; retry shortly",
                    headers={"retry-after": "5"},
                ) from None
            return Verdict(stage, "unavailable")
        finally:
            self.metrics.guardrail_latency.labels(stage).observe(time.perf_counter() - started)
        decision = data.get("decision", "allow")
        self.metrics.guardrail_checks.labels(stage, decision).inc()
        return Verdict(stage, decision, data.get("findings", []), data.get("text"))

    async def check_messages(self, messages: list[dict[str, Any]], team: str, project: str) -> Verdict:
        """Check the caller-supplied messages (user, tool) in parallel; redact in place; raise on block.

        System and developer messages are the application's own instructions (a RAG prompt, say), not input
        from the end user; checking them as attacks blocks legitimate applications (a measured false positive).
        """
        targets = [m for m in messages if m.get("role") in ("user", "tool") and message_text(m)]
        verdicts = await asyncio.gather(*(self.check("input", message_text(m), team, project) for m in targets))
        findings = [f for v in verdicts for f in v.findings]
        if any(v.decision == "block" for v in verdicts):
            raise blocked_error("input", findings)
        for message, verdict in zip(targets, verdicts, strict=True):
            if verdict.decision == "redact" and verdict.text is not None:
                message["content"] = verdict.text
        order = ["unavailable", "allow", "flag", "redact"]
        worst = max((v.decision for v in verdicts), key=order.index, default="allow")
        return Verdict("input", worst, findings)
