"""Stage 3, check input: one guardrails call for every text of every role; redactions are written back into the
payload that is forwarded, a block (or guardrails down under a fail-closed policy) refuses the request."""

from __future__ import annotations

from llmops_common.errors import APIError
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import Verdict
from services.gateway.stages.base import NoPost, RequestContext


class CheckInput(NoPost):
    name = "check_input"

    def __init__(self, checks: GuardrailChecks) -> None:
        self.checks = checks

    async def pre(self, ctx: RequestContext) -> None:
        try:
            ctx.verdicts.append(await self.checks.check_input(ctx))
        except APIError as exc:  # blocked, too large to check, or guardrails down under a fail-closed policy
            ctx.input_withheld = True  # its text must not be stored
            decision = "block" if exc.code == "guardrail_blocked" else "unavailable"
            ctx.verdicts.append(Verdict("input", decision, exc.extra.get("findings", [])))
            raise
