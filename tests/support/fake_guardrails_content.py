"""A FAKE guardrails service: only `POST /v1/check/content`, to the contract RAG codes against (COMMON.md).

It is not the platform's guardrails: it decides by marker words so a test knows each chunk's fate in advance:
`IGNORE ALL PREVIOUS` -> block, `FLAGME` -> flag, `555-0100` -> redact (to `[PHONE]`), anything else -> allow.
It records what it was sent (bodies and the bearer token) and can be switched down or to a fail mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

_RANK = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


@dataclass
class FakeContentGuardrails:
    """What the fake does and what it saw."""

    token: str = "fake-guardrails-token"
    mode: str = "ok"  # ok | down (500) | missing (404: a guardrails without the content mode)
    fail_mode: str = "open"
    bodies: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)


def _decide(text: str) -> tuple[str, str | None, list[dict[str, Any]]]:
    if "IGNORE ALL PREVIOUS" in text:
        return "block", None, [{"type": "indirect_injection", "score": 0.99}]
    if "FLAGME" in text:
        return "flag", None, [{"type": "suspicious_instruction", "score": 0.6}]
    if "555-0100" in text:
        return "redact", text.replace("555-0100", "[PHONE]"), [{"type": "pii.phone", "score": 1.0}]
    return "allow", None, []


def build_fake_content_guardrails(state: FakeContentGuardrails) -> FastAPI:
    """The fake's one route."""
    app = FastAPI()

    @app.post("/v1/check/content")
    async def check_content(request: Request) -> Any:
        state.auth.append(request.headers.get("authorization", ""))
        if request.headers.get("authorization") != f"Bearer {state.token}":
            return JSONResponse({"error": {"code": "invalid_service_token", "message": "no"}}, status_code=401)
        body = await request.json()
        state.bodies.append(body)
        if state.mode != "ok":
            status = 500 if state.mode == "down" else 404
            return JSONResponse({"error": {"code": "boom", "message": "down"}}, status_code=status)
        results: list[dict[str, Any]] = []
        decisions: list[str] = []
        for index, text in enumerate(body["texts"]):
            decision, redacted, findings = _decide(text)
            decisions.append(decision)
            results.append({"index": index, "decision": decision, "findings": findings, "text": redacted})
        worst = max(decisions, key=lambda d: _RANK[d], default="allow")
        return {
            "decision": worst,
            "results": results,
            "policy": "default",
            "fail_mode": state.fail_mode,
            "timeout_ms": 250,
            "errors": [],
            "latency_ms": 0.1,
        }

    return app
