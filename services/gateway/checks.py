"""The guardrail steps of the request path: one input check per request (every role, every text), and the
output check of a whole answer or of a stream's sliding window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops_common.errors import APIError
from services.gateway.guardrails import GuardrailsClient, Verdict, blocked_error
from services.gateway.messages import Segment, message_text, segments, write_back
from services.gateway.replies import error_frame

if TYPE_CHECKING:
    from services.gateway.call import Call


def _prompt_messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A completions prompt as user messages (one per prompt string)."""
    prompts = payload["prompt"] if isinstance(payload["prompt"], list) else [payload["prompt"]]
    return [{"role": "user", "content": p} for p in prompts]


class GuardrailChecks:
    """Applies the guardrails' verdicts to a call: redactions in place, blocks as errors."""

    def __init__(self, guard: GuardrailsClient, window_chars: int) -> None:
        self.guard = guard
        self.window = window_chars

    async def check_input(self, call: Call) -> Verdict:
        """One check of the whole request; redactions are written back into the payload that is forwarded."""
        payload = call.req.payload
        messages = payload["messages"] if call.req.kind == "chat" else _prompt_messages(payload)
        found: list[Segment] = segments(messages, call.req.context_parts)
        verdict, texts = await self.guard.check_input(found, call.record.team, call.record.project)
        for segment, text in zip(found, texts, strict=True):
            if text is not None:
                write_back(messages, segment, text)
        if call.req.kind == "completion":
            redacted = [m["content"] for m in messages]
            payload["prompt"] = redacted if isinstance(payload["prompt"], list) else redacted[0]
        call.input_redacted = any(t is not None for t in texts)
        return verdict

    async def check_output(self, call: Call, text: str) -> Verdict:
        """Check (a window of) the answer, with the already redacted prompt as context."""
        prompt = None
        if call.req.kind == "chat":
            prompt = "\n".join(message_text(m) for m in call.req.payload["messages"])
        verdict = await self.guard.check("output", text, call.record.team, call.record.project, prompt=prompt)
        call.verdicts.append(verdict)
        return verdict

    def window_due(self, call: Call, checked: int, final: bool = False) -> bool:
        """Has the stream produced a new window (or ended with unchecked text)?"""
        produced = sum(map(len, call.response_text))
        return produced > checked and (final or produced - checked >= self.window)

    async def check_stream_window(self, call: Call) -> tuple[int, bytes | None]:
        """Check the last window of the streamed answer; a block ends the stream with an error event."""
        text = "".join(call.response_text)
        try:
            verdict = await self.check_output(call, text[-2 * self.window :])
        except APIError as exc:  # guardrails down, fail-closed: the unchecked rest is withheld, and not stored
            call.output_blocked = True
            return len(text), error_frame(exc)
        if verdict.decision == "block":
            call.output_blocked = True
            return len(text), error_frame(blocked_error("output", verdict.findings))
        return len(text), None
