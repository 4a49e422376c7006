"""HTTP layer of the minimal guardrails service: plain Starlette, no FastAPI, no platform code.

    GUARDRAILS_SERVICE_TOKEN=<token> uvicorn examples.minimal_guardrails.app:create_app --factory --port 9005

Routes, bodies and errors follow services/guardrails/openapi.json, the contract the gateway relies on. Like the
platform's service it answers only callers with its service token (`Authorization: Bearer <token>`, from
GUARDRAILS_SERVICE_TOKEN, a comma-separated list for rotation), and refuses to start without one unless
GUARDRAILS_DEV_MODE=true (a local experiment, where anyone may call).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from examples.minimal_guardrails.checker import (
    OutputExtras,
    Policy,
    check,
    check_contents,
    check_messages,
    default_policies,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_TEXT_CHARS = 200_000  # about 50k tokens, over all the texts of one call: more than the platform's models read
MAX_MESSAGES = 1000  # the gateway refuses more, so more here is not a real request
MAX_TEXTS = 256
ROLES = {"system", "developer", "user", "assistant", "tool"}
INPUT_FIELDS = {"text", "messages", "team", "project", "policy"}
OUTPUT_FIELDS = {"text", "team", "project", "policy", "prompt", "context", "json_schema", "canaries"}
CONTENT_FIELDS = {"texts", "team", "project", "policy"}
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}  # probes and Prometheus, from inside the internal network


class ApiError(Exception):
    """A client error, rendered in the platform's one error envelope."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def _envelope(request: Request, status: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    """{"error": {message, type, param, code, request_id}}: callers branch on `code`."""
    request_id = request.headers.get("x-request-id") or "req_" + secrets.token_hex(12)
    kind = {404: "not_found_error"}.get(status, "invalid_request_error" if status < 500 else "api_error")
    error = {"message": message, "type": kind, "param": param, "code": code, "request_id": request_id}
    return JSONResponse({"error": error}, status_code=status, headers={"x-request-id": request_id})


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _envelope(request, exc.status, exc.code, exc.message, exc.param)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _envelope(request, exc.status_code, code, str(exc.detail))


async def _on_crash(request: Request, exc: Exception) -> Response:
    return _envelope(request, 500, "internal_error", "internal error; see the service log")


class ServiceToken:
    """Refuses every request outside OPEN_PATHS without one of the service tokens: 401, in the envelope."""

    def __init__(self, app: ASGIApp, tokens: list[str]) -> None:
        self.app, self.tokens = app, [t.encode() for t in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        presented = presented.strip() if scheme.lower() == "bearer" else ""
        # compare_digest: the time taken does not tell an attacker how much of a guess was right
        if presented and any(hmac.compare_digest(presented.encode(), t) for t in self.tokens):
            await self.app(scope, receive, send)
            return
        code = "invalid_service_token" if presented else "service_token_required"
        message = "the guardrails service answers only platform services: send `Authorization: Bearer <token>`"
        response = _envelope(request, 401, code, message)
        response.headers["www-authenticate"] = 'Bearer realm="llmops-internal"'
        await response(scope, receive, send)


def service_tokens() -> list[str]:
    """GUARDRAILS_SERVICE_TOKEN (comma-separated); none is an error unless GUARDRAILS_DEV_MODE=true."""
    tokens = [t.strip() for t in os.environ.get("GUARDRAILS_SERVICE_TOKEN", "").split(",") if t.strip()]
    if not tokens and os.environ.get("GUARDRAILS_DEV_MODE", "").lower() not in {"1", "true", "yes"}:
        raise RuntimeError("GUARDRAILS_SERVICE_TOKEN is not set (or set GUARDRAILS_DEV_MODE=true to let anyone call)")
    return tokens


async def _json_body(request: Request, allowed: set[str], required: str | None = "text") -> dict[str, Any]:
    """The body as a JSON object, refusing what is too big, not UTF-8, not JSON or has unknown fields."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "request_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():  # counted as it arrives: a missing content-length proves nothing
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "request_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field {unknown[0]!r}", param=unknown[0])
    if required is not None and required not in body:
        raise ApiError(400, "invalid_request", f"{required} is required", param=required)
    return body


def _string(value: Any, param: str, max_chars: int) -> str:
    """A string field that can be echoed back (no unpaired surrogates) and is not too long."""
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", f"{param} must be a string", param=param)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_request", f"{param} contains an unpaired surrogate", param=param) from None
    if len(value) > max_chars:
        raise ApiError(413, "text_too_long", f"{param} has {len(value)} characters; limit {max_chars}", param=param)
    return value


def _optional_strings(body: dict[str, Any], param: str, max_items: int) -> list[str] | None:
    """An optional list of strings (context passages, canaries)."""
    value = body.get(param)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > max_items:
        raise ApiError(400, "invalid_request", f"{param} must be a list of at most {max_items} strings", param=param)
    return [_string(item, param, MAX_TEXT_CHARS) for item in value]


def _total_chars(texts: list[str]) -> None:
    """One call is bounded over all its texts, not per text: a thousand large messages are one large call."""
    total = sum(len(t) for t in texts)
    if total > MAX_TEXT_CHARS:
        raise ApiError(413, "text_too_large", f"the texts have {total} characters in all; limit {MAX_TEXT_CHARS}")


def _messages(value: Any) -> list[tuple[str, str]]:
    """The messages form: a non-empty list of {role, content} with string content, at most MAX_MESSAGES."""
    if not isinstance(value, list) or not value:
        raise ApiError(400, "invalid_request", "messages must be a non-empty list", param="messages")
    if len(value) > MAX_MESSAGES:
        raise ApiError(413, "too_many_messages", f"{len(value)} messages; limit {MAX_MESSAGES}", param="messages")
    messages = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"role", "content"} or item.get("role") not in ROLES:
            raise ApiError(400, "invalid_request", f"messages[{i}] must be {{role, content}}", param="messages")
        messages.append((item["role"], _string(item.get("content"), f"messages[{i}].content", MAX_TEXT_CHARS)))
    _total_chars([content for _, content in messages])
    return messages


def _policy(request: Request, body: dict[str, Any]) -> Policy:
    """The policy named in the body, else the default (this example maps no team to its own policy)."""
    for param in ("team", "project", "policy"):
        if body.get(param) is not None:
            _string(body[param], param, 256)
    policies: dict[str, Policy] = request.app.state.policies
    name = body.get("policy") or "default"
    if name not in policies:
        raise ApiError(400, "unknown_policy", f"policy {name!r} is not defined", param="policy")
    return policies[name]


def _observe(
    request: Request, direction: str, result: dict[str, Any], findings: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Count the check under the platform's own metric names, so its dashboards keep working."""
    metrics = request.app.state.metrics
    metrics["checks"].labels(direction, result["policy"], result["decision"]).inc()
    metrics["latency"].labels(direction).observe(result["latency_ms"] / 1000)
    for finding in result["findings"] if findings is None else findings:
        metrics["findings"].labels(direction, finding["detector"], finding["action"]).inc()
    return result


async def check_input(request: Request) -> Response:
    """POST /v1/check/input: a prompt before it reaches the model, as `text` or as the request's `messages`
    (every role checked in one call; tool messages in content mode)."""
    body = await _json_body(request, INPUT_FIELDS, required=None)
    if ("text" in body) == ("messages" in body):
        raise ApiError(400, "invalid_request", "send exactly one of text or messages", param="text")
    if "messages" in body:
        messages = _messages(body["messages"])
        policy = _policy(request, body)
        result = await run_in_threadpool(check_messages, messages, policy)  # CPU work: keep the event loop free
        return JSONResponse(_observe(request, "input", result))
    text = _string(body["text"], "text", MAX_TEXT_CHARS)
    policy = _policy(request, body)
    result = await run_in_threadpool(check, "input", text, policy)
    return JSONResponse(_observe(request, "input", result))


async def check_content(request: Request) -> Response:
    """POST /v1/check/content: documents, retrieved chunks, tool results (text the model reads, not the user's)."""
    body = await _json_body(request, CONTENT_FIELDS, required="texts")
    texts = body["texts"]
    if not isinstance(texts, list):
        raise ApiError(400, "invalid_request", "texts must be a list of strings", param="texts")
    if len(texts) > MAX_TEXTS:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts; limit {MAX_TEXTS}", param="texts")
    texts = [_string(t, f"texts[{i}]", MAX_TEXT_CHARS) for i, t in enumerate(texts)]
    _total_chars(texts)
    policy = _policy(request, body)
    result = await run_in_threadpool(check_contents, texts, policy)
    findings = [f for r in result["results"] for f in r["findings"]]
    return JSONResponse(_observe(request, "content", result, findings))


async def check_output(request: Request) -> Response:
    """POST /v1/check/output: a model answer, with optional canaries, context and JSON schema."""
    body = await _json_body(request, OUTPUT_FIELDS)
    text = _string(body["text"], "text", MAX_TEXT_CHARS)
    if body.get("prompt") is not None:
        _string(body["prompt"], "prompt", MAX_TEXT_CHARS)
    policy = _policy(request, body)
    extras = OutputExtras(_optional_strings(body, "canaries", 64) or [], _optional_strings(body, "context", 256))
    schema = body.get("json_schema")
    if schema is not None:
        if not isinstance(schema, dict):
            raise ApiError(400, "invalid_request", "json_schema must be an object", param="json_schema")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ApiError(400, "invalid_json_schema", f"json_schema: {exc.message}", param="json_schema") from None
        extras.schema = Draft202012Validator(schema)
    result = await run_in_threadpool(check, "output", text, policy, extras)
    return JSONResponse(_observe(request, "output", result))


async def list_policies(request: Request) -> Response:
    """GET /v1/policies: policy names, the default, the team mapping (none here)."""
    return JSONResponse({"default_policy": "default", "policies": sorted(request.app.state.policies), "teams": {}})


async def team_policy(request: Request) -> Response:
    """GET /v1/policies/{team}: the effective policy, with the fail mode and timeout the gateway applies."""
    policy: Policy = request.app.state.policies["default"]
    return JSONResponse(
        {
            "team": request.path_params["team"],
            "project": request.query_params.get("project"),
            "policy": policy.public(),
            "fail_mode": policy.fail_mode,
            "timeout_ms": policy.timeout_ms,
        }
    )


async def healthz(request: Request) -> Response:
    """Alive."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: nothing to load, so as soon as the process serves."""
    return JSONResponse({"status": "ready", "uptime_s": round(time.monotonic() - request.app.state.started, 1)})


async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


def create_app() -> Starlette:
    """The app; GUARDRAILS_TIMEOUT_MS sets the check budget the gateway uses as its timeout (default 250)."""
    tokens = service_tokens()
    app = Starlette(
        # outermost: refuses a caller without the token before reading any body
        middleware=[Middleware(ServiceToken, tokens=tokens)] if tokens else [],
        routes=[
            Route("/v1/check/input", check_input, methods=["POST"]),
            Route("/v1/check/content", check_content, methods=["POST"]),
            Route("/v1/check/output", check_output, methods=["POST"]),
            Route("/v1/policies", list_policies),
            Route("/v1/policies/{team}", team_policy),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        exception_handlers={ApiError: _on_api_error, HTTPException: _on_http_error, Exception: _on_crash},
    )
    registry = CollectorRegistry()  # one per app, so two apps in one process (tests) do not collide
    app.state.registry = registry
    app.state.metrics = {
        "checks": Counter(
            "llmops_guardrails_checks_total", "Checks by direction, policy, decision.",
            ["direction", "policy", "decision"], registry=registry,
        ),
        "findings": Counter(
            "llmops_guardrails_findings_total", "Findings by direction, detector, action.",
            ["direction", "detector", "action"], registry=registry,
        ),
        "latency": Histogram(
            "llmops_guardrails_check_duration_seconds", "Time to run one check, without HTTP.",
            ["direction"], registry=registry,
        ),
    }  # fmt: skip
    app.state.policies = default_policies(int(os.environ.get("GUARDRAILS_TIMEOUT_MS", "250")))
    app.state.started = time.monotonic()
    return app
