"""Thin HTTP routes: validate, resolve the policy, run the checker, map errors to the envelope."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from llmops_common.errors import APIError
from services.guardrails.checker import Checker
from services.guardrails.detectors.base import CheckInput
from services.guardrails.policies import Policy, PolicySet, UnknownPolicy
from services.guardrails.schemas import CheckBase, CheckResponse, InputCheckRequest, OutputCheckRequest, PolicyResponse
from services.guardrails.settings import GuardrailsSettings

router = APIRouter(prefix="/v1", tags=["guardrails"])


def _checker(request: Request) -> Checker:
    checker: Checker | None = getattr(request.app.state, "checker", None)
    if checker is None:
        raise APIError(503, "not_ready", "detectors are still loading; retry shortly", headers={"retry-after": "2"})
    return checker


def _policy(request: Request, body: CheckBase) -> Policy:
    policies: PolicySet = request.app.state.policies
    try:
        return policies.resolve(body.team, body.project, body.policy)
    except UnknownPolicy as exc:
        raise APIError(400, "unknown_policy", f"policy {exc} is not defined", param="policy") from exc


def _limit(settings: GuardrailsSettings, body: CheckBase) -> None:
    if len(body.text) > settings.max_text_chars:
        raise APIError(
            413, "text_too_long", f"text has {len(body.text)} characters; the limit is {settings.max_text_chars}",
            param="text",
        )  # fmt: skip


@router.post("/check/input", response_model=CheckResponse)
async def check_input(body: InputCheckRequest, request: Request) -> dict:
    """Check a prompt before it reaches the model: injection, PII and secrets, deny-lists, topics, length."""
    checker = _checker(request)
    _limit(request.app.state.settings, body)
    policy = _policy(request, body)
    # Input checks take about a millisecond: running them inline is cheaper than a thread hop.
    return checker.check("input", CheckInput(text=body.text, direction="input"), policy).as_dict()


@router.post("/check/output", response_model=CheckResponse)
async def check_output(body: OutputCheckRequest, request: Request) -> dict:
    """Check a model answer: leaks (PII, secrets, canaries), deny-lists, JSON schema, groundedness."""
    checker = _checker(request)
    settings: GuardrailsSettings = request.app.state.settings
    _limit(settings, body)
    if sum(len(c) for c in body.context or []) > settings.max_context_chars:
        raise APIError(
            413, "context_too_long", f"context exceeds {settings.max_context_chars} characters", param="context"
        )
    policy = _policy(request, body)
    inp = CheckInput(
        text=body.text, direction="output", prompt=body.prompt, context=body.context,
        json_schema=body.json_schema, canaries=body.canaries,
    )  # fmt: skip
    # Groundedness runs the transformer: keep it off the event loop.
    result = await run_in_threadpool(checker.check, "output", inp, policy)
    return result.as_dict()


@router.get("/policies", tags=["policies"])
async def list_policies(request: Request) -> dict:
    """Names of all policies, the default and the team mapping."""
    policies: PolicySet = request.app.state.policies
    return {
        "default_policy": policies.default,
        "policies": sorted(policies.policies),
        "teams": {name: team.model_dump() for name, team in policies.teams.items()},
        "source": policies.source,
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
