"""The gateway's side of the guardrails service: input checks before routing, output checks after
generation (a sliding window for streams), and the team's fail mode when the service is down or slow."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

from llmops_common.errors import APIError
from llmops_common.service_auth import service_headers
from llmops_common.telemetry import inject_trace_headers
from services.gateway.messages import Segment
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


class GuardrailsClient:
    """Calls POST /v1/check/{input,output} (one call per stage per request); every call is bounded by the team's
    timeout and carries the gateway's service token."""

    def __init__(
        self,
        base_url: str,
        timeout_ms: int,
        default_fail_mode: FailMode,
        metrics: GatewayMetrics,
        token: str | None = None,
        policy_ttl_s: float = _POLICY_TTL_S,
        uds: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.uds = uds  # the service's Unix socket when it runs beside the gateway (GATEWAY_GUARDRAILS_UDS)
        self._auth = service_headers(token)  # GATEWAY_GUARDRAILS_TOKEN: guardrails answers only platform services
        self.default_timeout_s = timeout_ms / 1000
        self.default_fail_mode = default_fail_mode
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self.policy_ttl_s = policy_ttl_s
        self._policies: dict[str, tuple[float, FailMode, float]] = {}

    async def start(self) -> None:
        """Open the connection pool (keep-alive connections over TCP, or over the Unix socket when set)."""
        connector = aiohttp.UnixConnector(path=self.uds) if self.uds else None
        self._session = aiohttp.ClientSession(connector=connector)

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    async def _policy(self, team: str) -> tuple[FailMode, float]:
        """The team's fail mode and timeout (cached; when the service cannot say: the last answer it gave, however
        old, else the gateway's defaults)."""
        cached = self._policies.get(team)
        if cached and time.monotonic() - cached[0] < self.policy_ttl_s:
            return cached[1], cached[2]
        # An outage is exactly when the team's choice matters: a fail-open team stays open past the cache's TTL.
        fail_mode, timeout_s = (cached[1], cached[2]) if cached else (self.default_fail_mode, self.default_timeout_s)
        try:
            assert self._session is not None
            async with self._session.get(
                f"{self.base_url}/v1/policies/{team}",
                headers=self._auth,
                timeout=aiohttp.ClientTimeout(total=self.default_timeout_s),
            ) as resp:
                if resp.status == 200:
                    data = await resp.json(loads=orjson.loads)
                    fail_mode = data.get("fail_mode", fail_mode)
                    timeout_s = data.get("timeout_ms", timeout_s * 1000) / 1000
                    self._policies[team] = (time.monotonic(), fail_mode, timeout_s)
        except (aiohttp.ClientError, TimeoutError):
            pass  # keep the last known policy (or the defaults); the next request asks again
        return fail_mode, timeout_s

    async def _post(self, stage: str, body: dict[str, Any], team: str) -> dict[str, Any] | None:
        """One call; None when the service failed and the fail mode lets the request pass."""
        fail_mode, timeout_s = await self._policy(team)
        started = time.perf_counter()
        try:
            assert self._session is not None
            async with self._session.post(
                f"{self.base_url}/v1/check/{stage}",
                data=orjson.dumps(body),
                headers=inject_trace_headers({"content-type": "application/json", **self._auth}),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                data = await resp.json(loads=orjson.loads, content_type=None)
                if resp.status == 413:  # the request's own size: the caller's error, not an outage
                    raise _too_large(data)
                if resp.status != 200 or not isinstance(data, dict):
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
            return None
        finally:
            self.metrics.guardrail_latency.labels(stage).observe(time.perf_counter() - started)
        self.metrics.guardrail_checks.labels(stage, data.get("decision", "allow")).inc()
        return data

    async def check(self, stage: str, text: str, team: str, project: str, **extra: Any) -> Verdict:
        """One single-text check (the output stage); applies the fail mode when the service errors or is slow."""
        body = {"text": text, "team": team, "project": project, **{k: v for k, v in extra.items() if v}}
        data = await self._post(stage, body, team)
        if data is None:
            return Verdict(stage, "unavailable")
        return Verdict(stage, data.get("decision", "allow"), data.get("findings", []), data.get("text"))

    async def check_input(self, segments: list[Segment], team: str, project: str) -> tuple[Verdict, list[str | None]]:
        """ONE input check of every text of the request, each with its role (the policy maps roles to modes:
        tool results are read as content, indirect injection) and trusted retrieved context marked as such.
        Raises on block; returns the verdict and, per segment, its redacted text (None: unchanged)."""
        if not segments:
            return Verdict("input", "allow"), []
        body = {
            "messages": [
                {"role": seg.role, "content": seg.text, "context": True}
                if seg.context
                else {"role": seg.role, "content": seg.text}
                for seg in segments
            ],
            "team": team,
            "project": project,
        }
        data = await self._post("input", body, team)
        if data is None:
            return Verdict("input", "unavailable"), [None] * len(segments)
        findings = data.get("findings") or []
        decision = data.get("decision", "allow")
        if decision == "block":
            raise blocked_error("input", findings)
        texts: list[str | None] = [None] * len(segments)
        for item in data.get("messages") or ():
            index, text = item.get("index"), item.get("text")
            in_range = isinstance(index, int) and 0 <= index < len(segments)
            if in_range and item.get("decision") == "redact" and isinstance(text, str):
                texts[index] = text
        return Verdict("input", decision, findings), texts


def _too_large(data: Any) -> APIError:
    """The guardrails' 413 (too many messages, too much text) relayed with its code and words."""
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code") or "text_too_large")
    detail = str(err.get("message") or "the request holds more text than the guardrails check accepts")
    return APIError(413, code, f"the input is too large to check: {detail}")
