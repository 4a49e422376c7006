"""Stage 6, check output: a whole answer checked once (a block becomes a 400, a redaction replaces the text);
a stream checked window by window as it is relayed (a block, or guardrails down under a fail-closed policy, ends
it with an error event). An answer it withholds is still paid for, and never stored."""

from __future__ import annotations

from typing import Any

import orjson

from llmops_common.errors import APIError, error_body
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import blocked_error
from services.gateway.replies import replace_answer
from services.gateway.stages.base import Completed, RequestContext


class CheckOutput:
    name = "check_output"

    def __init__(self, checks: GuardrailChecks) -> None:
        self.checks = checks

    async def whole(
        self, ctx: RequestContext, data: dict[str, Any], headers: dict[str, str]
    ) -> Completed | bytes | None:
        """Check a whole answer's text (ctx.response_text): the 400 that replaces a blocked answer, the new body of
        a redacted one, or None when it passes unchanged. Raises the check's APIError (fail-closed, guardrails
        down), with ctx.output_blocked set: the caller settles it."""
        try:
            verdict = await self.checks.check_output(ctx, "".join(ctx.response_text))
        except APIError:
            ctx.output_blocked = True
            raise
        headers["x-llmops-guardrails"] = ctx.guardrails_header()
        if verdict.decision == "block":
            ctx.output_blocked = True
            err = blocked_error("output", verdict.findings)
            return Completed(400, orjson.dumps(error_body(400, err.code, err.message, **err.extra)), headers)
        if verdict.decision == "redact" and verdict.text is not None:
            replace_answer(data, verdict.text)
            ctx.response_text = [verdict.text]
            return orjson.dumps(data)
        return None

    def due(self, ctx: RequestContext, checked: int, final: bool = False) -> bool:
        """Has the stream produced a new window since `checked` characters (or ended with unchecked text)?"""
        return self.checks.window_due(ctx, checked, final)

    async def window(self, ctx: RequestContext) -> tuple[int, bytes | None]:
        """Check the stream's newest window: the characters now covered, and the error event that ends the stream
        when the answer is withheld."""
        return await self.checks.check_stream_window(ctx)
