"""Relaying the deployment's answer: bounded in size, checked by the output guardrails, metered at the end.

A whole answer is read up to GATEWAY_MAX_RESPONSE_BYTES (one larger becomes a 502, never buffered whole); a
stream is cut with an error event at the same bound. Every path ends in exactly one `finish` (settlement,
metrics, trace event), also when the client goes away.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import orjson

from llmops_common.errors import APIError, error_body
from llmops_common.sse import DONE, SSEReader
from services.gateway.call import Call, span_usage, usage_tokens
from services.gateway.checks import GuardrailChecks
from services.gateway.guardrails import blocked_error
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.replies import as_envelope, error_frame, replace_answer

Finish = Callable[..., Coroutine[Any, Any, int]]


class _TooLarge(Exception):
    """The deployment's stream passed the response size limit."""


async def _bounded(lines: aiohttp.StreamReader, limit: int) -> AsyncIterator[bytes]:
    """The stream's lines, raising _TooLarge once they add up to more than `limit` bytes."""
    received = 0
    async for line in lines:
        received += len(line)
        if received > limit:
            raise _TooLarge
        yield line


@dataclass
class Completed:
    """A finished answer to send as-is."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Streaming:
    """An SSE answer: headers now, chunks as they come."""

    chunks: AsyncIterator[bytes]
    headers: dict[str, str]


class ResponseTooLarge(Exception):
    """The deployment's answer is over the gateway's bound."""


def too_large(limit: int) -> APIError:
    """The 502 an oversized answer becomes."""
    return APIError(
        502,
        "upstream_response_too_large",
        f"the deployment's answer is larger than {limit} bytes (GATEWAY_MAX_RESPONSE_BYTES); it was not relayed",
    )


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ResponseTooLarge as soon as it passes `limit` (nothing larger is held in memory)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise ResponseTooLarge
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65_536):
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge
    return bytes(body)


def reserved_usage(call: Call) -> dict[str, int]:
    """What an answer we could not read is charged: the bound it was reserved for (the engine did the work)."""
    return {"prompt_tokens": math.ceil(call.req.body_bytes / 4), "completion_tokens": call.req.max_output_tokens}


class Relay:
    """Sends the answer back; `finish` settles and records, `background` runs it after a whole answer is sent."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        checks: GuardrailChecks | None,
        max_response_bytes: int,
        finish: Finish,
        background: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.metrics = metrics
        self.checks = checks
        self.limit = max_response_bytes
        self.finish = finish
        self.background = background

    async def complete(self, call: Call, headers: dict[str, str]) -> Completed:
        """A non-streamed answer: read (bounded), check, meter."""
        assert call.up is not None
        resp = call.up.response
        try:
            body = await read_bounded(resp, self.limit)
        except ResponseTooLarge:
            resp.close()  # the rest is never read: drop the connection rather than drain it
            await self.finish(call, 502, reserved_usage(call), error_code="upstream_response_too_large")
            raise too_large(self.limit) from None
        finally:
            resp.release()
        upstream_s = time.perf_counter() - call.up.started
        if resp.status != 200:
            await self.finish(call, resp.status, None, error_code="upstream_client_error")
            return Completed(resp.status, as_envelope(resp.status, body), headers)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            await self.finish(call, 502, reserved_usage(call), error_code="upstream_invalid_response")
            raise APIError(502, "upstream_invalid_response", "the deployment answered 200 with invalid JSON") from None
        usage = data.get("usage") or {}
        for choice in data.get("choices") or ():
            text = (choice.get("message") or {}).get("content") or choice.get("text")
            if isinstance(text, str) and text:
                call.response_text.append(text)
        if self.checks is not None and call.response_text:
            try:
                verdict = await self.checks.check_output(call, "".join(call.response_text))
            except APIError as exc:  # guardrails down, fail-closed: the answer is withheld but still paid for
                call.output_blocked = True
                await self.finish(call, exc.status, usage, error_code=exc.code)
                raise
            headers["x-llmops-guardrails"] = call.guardrails_header()
            if verdict.decision == "block":
                call.output_blocked = True
                await self.finish(call, 400, usage, error_code="guardrail_blocked")
                err = blocked_error("output", verdict.findings)
                return Completed(400, orjson.dumps(error_body(400, err.code, err.message, **err.extra)), headers)
            if verdict.decision == "redact" and verdict.text is not None:
                replace_answer(data, verdict.text)
                call.response_text = [verdict.text]
                body = orjson.dumps(data)
        # Settlement and metering run after the answer is sent: they only move counters in Redis (a crash in
        # between leaves the reservation counted, which errs on the safe side), and the caller need not wait.
        cost = call.route.price.cost_nano(*usage_tokens(usage))
        span_usage(call, usage)  # now: the request's span ends before the background work runs
        call.recorded = True  # the background finish below is this call's one record
        self.background(self.finish(call, 200, usage))
        overhead_s = (time.perf_counter() - call.started) - upstream_s
        self.metrics.overhead.observe(overhead_s)
        headers["x-llmops-cost-usd"] = f"{nano_to_usd(cost):.9f}"
        headers["x-llmops-overhead-ms"] = f"{overhead_s * 1000:.3f}"
        return Completed(200, body, headers)

    async def stream(self, call: Call) -> AsyncIterator[bytes]:
        """Forward SSE chunks; add the cost to the usage chunk; settle even if the client goes away."""
        assert call.up is not None
        resp = call.up.response
        usage: dict[str, Any] | None = None
        chunks = 0
        status = 200
        code: str | None = None
        checked = 0  # characters of the answer already covered by an output check
        reader = SSEReader(_bounded(resp.content, self.limit))
        try:
            async for data in reader:
                event = orjson.loads(data)
                if call.ttft_s is None:
                    call.ttft_s = time.perf_counter() - call.started
                    self.metrics.ttft.labels(call.req.model).observe(call.ttft_s)
                if "error" in event:
                    status = 502  # the deployment failed after the first byte; the error event is relayed
                for choice in event.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if isinstance(text, str) and text:
                        call.response_text.append(text)
                        chunks += 1
                if event.get("usage"):
                    usage = event["usage"]
                    usage["cost_usd"] = nano_to_usd(call.route.price.cost_nano(*usage_tokens(usage)))
                    if not event.get("choices") and not call.req.wants_usage:
                        continue  # the caller did not ask for the usage chunk
                    data = orjson.dumps(event)
                if self.checks is not None and chunks and self.checks.window_due(call, checked):
                    checked, stop = await self.checks.check_stream_window(call)
                    if stop is not None:
                        status = 400
                        yield stop
                        return
                yield b"data: " + data + b"\n\n"
            if not reader.done:
                # Closed without [DONE]: a close-delimited answer cannot tell a killed engine from an orderly end,
                # and relaying our own [DONE] would pass a truncated answer off as complete.
                status, code = 502, "upstream_stream_error"
                yield error_frame(APIError(502, code, "the deployment's stream ended without [DONE]"))
                return
            if self.checks is not None and call.response_text and self.checks.window_due(call, checked, final=True):
                _, stop = await self.checks.check_stream_window(call)
                if stop is not None:
                    status = 400
                    yield stop
                    return
            yield DONE
        except _TooLarge:
            status, code = 502, "upstream_response_too_large"
            yield error_frame(too_large(self.limit))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The deployment broke mid-stream (cut, stalled, an over-long line, bad JSON): say so in the stream.
            status, code = 502, "upstream_stream_error"
            yield error_frame(APIError(502, code, f"the deployment's stream broke: {type(exc).__name__}"))
        except Exception:
            status, code = 500, "internal_error"
            raise
        finally:
            resp.release()
            if usage is None:  # client left or upstream cut: meter what we saw
                usage = {"prompt_tokens": math.ceil(call.req.body_bytes / 4), "completion_tokens": chunks}
            span_usage(call, usage)
            with anyio.CancelScope(shield=True):
                await self.finish(call, status, usage, error_code=code)
