"""Thin HTTP routes: validate, bound, resolve the policy, run the checker, map errors to the envelope."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response, Security
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from llmops_common.errors import APIError
from services.guardrails.checker import Checker, chat_items
from services.guardrails.detectors.base import CheckInput
from services.guardrails.policies import Mode, Policy, PolicySet, UnknownPolicy
from services.guardrails.schemas import (
    Caller,
    CheckResponse,
    ContentCheckRequest,
    ContentCheckResponse,
    InputCheckRequest,
    OutputCheckRequest,
    PolicyResponse,
)
from services.guardrails.settings import GuardrailsSettings

# Documents the service token in the OpenAPI document; ServiceTokenMiddleware (app.py) enforces it, before
# the body is even read, so this dependency never refuses anything itself.
service_token = HTTPBearer(
    auto_error=False,
    scheme_name="serviceToken",
    description="GUARDRAILS_SERVICE_TOKEN: only platform services (gateway, rag) call guardrails. "
    "Not required when the service runs with GUARDRAILS_DEV_MODE=true and no token.",
)
router = APIRouter(prefix="/v1", tags=["guardrails"], dependencies=[Security(service_token)])

# Checks over fewer characters than this run inline: about a millisecond, cheaper than a thread hop.
# Longer ones, and any that runs the NER model (~25 ms per 1,000 characters), go to a worker thread so
# the event loop keeps answering probes and short checks.
_INLINE_CHARS = 20_000


def _json(body: dict[str, Any]) -> Response:
    """The verdict as JSON, written once by orjson. The check routes return a Response, so FastAPI skips
    re-validating the dict against `response_model` (kept on the routes for the OpenAPI document) and its
    generic encoder: the checker builds exactly that shape (tests/contract hold it to the schema)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _inline(chars: int, policy: Policy, *modes: Mode) -> bool:
    return chars <= _INLINE_CHARS and not any(policy.reads_names(m) for m in modes)


def _checker(request: Request) -> Checker:
    checker: Checker | None = getattr(request.app.state, "checker", None)
    if checker is None:
        raise APIError(503, "not_ready", "detectors are still loading; retry shortly", headers={"retry-after": "2"})
    return checker


def _policy(request: Request, body: Caller) -> Policy:
    policies: PolicySet = request.app.state.policies
    try:
        return policies.resolve(body.team, body.project, body.policy)
    except UnknownPolicy as exc:
        raise APIError(400, "unknown_policy", f"policy {exc} is not defined", param="policy") from exc


def _bound(settings: GuardrailsSettings, texts: list[str], param: str, count_code: str) -> int:
    """413 beyond the per-call limits (count of texts, characters over all of them); returns the characters."""
    if len(texts) > settings.max_messages:
        raise APIError(
            413, count_code,
            f"{len(texts)} {param} in one check; the limit is {settings.max_messages} (GUARDRAILS_MAX_MESSAGES)",
            param=param,
        )  # fmt: skip
    total = sum(len(t) for t in texts)
    if total > settings.max_text_chars:
        raise APIError(
            413, "text_too_large",
            f"{param} hold {total} characters in all; "
            f"the limit is {settings.max_text_chars} (GUARDRAILS_MAX_TEXT_CHARS)",
            param=param,
        )  # fmt: skip
    return total


@router.post("/check/input", response_model=CheckResponse)
async def check_input(body: InputCheckRequest, request: Request) -> Response:
    """Check what goes into the model: one `text`, or every message of a request (tool results as content)."""
    checker = _checker(request)
    settings: GuardrailsSettings = request.app.state.settings
    if body.messages is None:
        text = body.text or ""
        _bound(settings, [text], "text", "too_many_messages")
        policy = _policy(request, body)
        inp = CheckInput(text=text, direction="input")
        if _inline(len(text), policy, "input"):
            return _json(checker.check("input", inp, policy).as_dict())
        return _json((await run_in_threadpool(checker.check, "input", inp, policy)).as_dict())
    total = _bound(settings, [m.content for m in body.messages], "messages", "too_many_messages")
    policy = _policy(request, body)
    # What the model reads (tool results, retrieved context) is judged as content (indirect injection), what
    # a user says as input; the policy's `roles` map says which role is which.
    items = chat_items([(m.role, m.content, m.context) for m in body.messages], policy)
    if _inline(total, policy, *{mode for mode, _ in items}):
        return _json(checker.check_many(items, policy, "input").as_messages_dict())
    return _json((await run_in_threadpool(checker.check_many, items, policy, "input")).as_messages_dict())


@router.post("/check/content", response_model=ContentCheckResponse)
async def check_content(body: ContentCheckRequest, request: Request) -> Response:
    """Check what the model is about to read (documents, retrieved chunks, tool results): indirect injection, PII."""
    checker = _checker(request)
    total = _bound(request.app.state.settings, body.texts, "texts", "too_many_texts")
    policy = _policy(request, body)
    items: list[tuple[Mode, CheckInput]] = [("content", CheckInput(text=t, direction="input")) for t in body.texts]
    if _inline(total, policy, "content"):
        return _json(checker.check_many(items, policy, "content").as_content_dict())
    return _json((await run_in_threadpool(checker.check_many, items, policy, "content")).as_content_dict())


@router.post("/check/output", response_model=CheckResponse)
async def check_output(body: OutputCheckRequest, request: Request) -> Response:
    """Check a model answer: leaks (PII, secrets, canaries), deny-lists, JSON schema, groundedness."""
    checker = _checker(request)
    settings: GuardrailsSettings = request.app.state.settings
    _bound(settings, [body.text], "text", "too_many_messages")
    if sum(len(c) for c in body.context or []) > settings.max_context_chars:
        raise APIError(
            413, "context_too_long", f"context exceeds {settings.max_context_chars} characters", param="context"
        )
    policy = _policy(request, body)
    inp = CheckInput(
        text=body.text, direction="output", mode="output", prompt=body.prompt, context=body.context,
        json_schema=body.json_schema, canaries=body.canaries,
    )  # fmt: skip
    size = len(body.text) + sum(len(c) for c in body.context or [])
    if _inline(size, policy, "output"):
        return _json(checker.check("output", inp, policy).as_dict())
    return _json((await run_in_threadpool(checker.check, "output", inp, policy)).as_dict())


@router.get("/policies", tags=["policies"])
async def list_policies(request: Request) -> dict:
    """Names of all policies, the default and the team mapping (service token required)."""
    policies: PolicySet = request.app.state.policies
    return {
        "default_policy": policies.default,
        "policies": sorted(policies.policies),
        "teams": {name: team.model_dump() for name, team in policies.teams.items()},
    }


@router.get("/policies/{team}", response_model=PolicyResponse, tags=["policies"])
async def team_policy(team: str, request: Request, project: str | None = None) -> dict:
    """The effective policy of a team (optionally of one of its projects), with fail_mode and timeout_ms."""
    policies: PolicySet = request.app.state.policies
    policy = policies.resolve(team, project)
    return {
        "team": team,
        "project": project,
        "policy": policy.public(),
        "fail_mode": policy.fail_mode,
        "timeout_ms": policy.timeout_ms,
    }
