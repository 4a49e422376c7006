"""Stage 5, relay: the deployment's answer sent back, bounded in size, with the output check (stage 6) applied
and settlement (stage 7) at its end.

A whole answer is read up to GATEWAY_MAX_RESPONSE_BYTES (one larger becomes a 502, never buffered whole); a
stream is cut with an error event at the same bound. Every path ends in exactly one `finish` (settlement,
metrics, trace event), also when the client goes away.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import orjson

from llmops_common.errors import APIError
from llmops_common.sse import DONE, SSEReader
from services.gateway.call import span_usage, usage_tokens
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.replies import as_envelope, error_frame
from services.gateway.stages.base import Answer, Background, Completed, NoPost, RequestContext, Streaming
from services.gateway.stages.emit import Versions, answered_version

if TYPE_CHECKING:
    from services.gateway.stages.check_output import CheckOutput

Finish = Callable[..., Coroutine[Any, Any, int]]


@dataclass
class _Tally:
    """What a stream has carried so far: its settlement's inputs."""

    status: int = 200
    code: str | None = None
    usage: dict[str, Any] | None = None
    chunks: int = 0  # events that carried text
    checked: int = 0  # characters of the answer already covered by an output check


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


def _answer_texts(data: dict[str, Any]) -> list[str]:
    """The texts of a whole answer's choices (chat or text completions)."""
    texts = ((choice.get("message") or {}).get("content") or choice.get("text") for choice in data.get("choices") or ())
    return [text for text in texts if isinstance(text, str) and text]


def reserved_usage(ctx: RequestContext) -> dict[str, int]:
    """What an answer we could not read is charged: the bound it was reserved for (the engine did the work)."""
    return {"prompt_tokens": math.ceil(ctx.req.body_bytes / 4), "completion_tokens": ctx.req.max_output_tokens}


class Relay(NoPost):
    """Sends the answer back; `finish` settles and records, `background` runs it after a whole answer is sent."""

    name = "relay"

    def __init__(
        self,
        metrics: GatewayMetrics,
        output: CheckOutput | None,
        max_response_bytes: int,
        finish: Finish,
        background: Background,
        version: Versions,
    ) -> None:
        self.metrics = metrics
        self.output = output
        self.limit = max_response_bytes
        self.finish = finish
        self.background = background
        self.version = version

    async def pre(self, ctx: RequestContext) -> Answer:
        """The answer's headers, then the stream or the whole answer."""
        assert ctx.up is not None
        headers = {"x-llmops-deployment": ctx.up.deployment.name}
        if version := answered_version(ctx, self.version):
            headers["x-llmops-model-version"] = version
        if ctx.verdicts:
            headers["x-llmops-guardrails"] = ctx.guardrails_header()
        if ctx.up.fallbacks:
            headers["x-llmops-fallbacks"] = str(ctx.up.fallbacks)
        if ctx.cache_policy is not None:
            headers["x-llmops-cache"] = "miss"
        if ctx.req.stream and ctx.up.response.status == 200:
            headers["x-llmops-overhead-ms"] = f"{(ctx.up.started - ctx.started) * 1000:.3f}"
            ctx.recorded = True  # from here the stream's own finally records it, whenever it ends
            return Streaming(self.stream(ctx), headers)
        return await self.complete(ctx, headers)

    async def complete(self, ctx: RequestContext, headers: dict[str, str]) -> Completed:
        """A non-streamed answer: read (bounded), check, meter."""
        assert ctx.up is not None
        resp = ctx.up.response
        try:
            body = await read_bounded(resp, self.limit)
        except ResponseTooLarge:
            resp.close()  # the rest is never read: drop the connection rather than drain it
            await self.finish(ctx, 502, reserved_usage(ctx), error_code="upstream_response_too_large")
            raise too_large(self.limit) from None
        finally:
            resp.release()
        upstream_s = time.perf_counter() - ctx.up.started
        if resp.status != 200:
            await self.finish(ctx, resp.status, None, error_code="upstream_client_error")
            return Completed(resp.status, as_envelope(resp.status, body), headers)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            await self.finish(ctx, 502, reserved_usage(ctx), error_code="upstream_invalid_response")
            raise APIError(502, "upstream_invalid_response", "the deployment answered 200 with invalid JSON") from None
        usage = data.get("usage") or {}
        ctx.response_text.extend(_answer_texts(data))
        if self.output is not None and ctx.response_text:
            try:
                checked = await self.output.whole(ctx, data, headers)
            except APIError as exc:  # guardrails down, fail-closed: the answer is withheld but still paid for
                await self.finish(ctx, exc.status, usage, error_code=exc.code)
                raise
            if isinstance(checked, Completed):  # blocked: the refusal replaces the answer
                await self.finish(ctx, 400, usage, error_code="guardrail_blocked")
                return checked
            if checked is not None:  # redacted
                body = checked
        # Settlement and metering run after the answer is sent: they only move counters in Redis (a crash in
        # between leaves the reservation counted, which errs on the safe side), and the caller need not wait.
        cost = ctx.route.price.cost_nano(*usage_tokens(usage))
        span_usage(ctx, usage)  # now: the request's span ends before the background work runs
        ctx.recorded = True  # the background finish below is this call's one record
        self.background.run(self.finish(ctx, 200, usage))
        overhead_s = (time.perf_counter() - ctx.started) - upstream_s
        self.metrics.overhead.observe(overhead_s)
        headers["x-llmops-cost-usd"] = f"{nano_to_usd(cost):.9f}"
        headers["x-llmops-overhead-ms"] = f"{overhead_s * 1000:.3f}"
        return Completed(200, body, headers)

    def _took(self, ctx: RequestContext, event: dict[str, Any]) -> int:
        """Note a stream event: the first one's time (TTFT) and its texts; returns how many texts it carried."""
        if ctx.ttft_s is None:
            ctx.ttft_s = time.perf_counter() - ctx.started
            self.metrics.ttft.labels(ctx.req.model).observe(ctx.ttft_s)
        took = 0
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") or choice.get("text")
            if isinstance(text, str) and text:
                ctx.response_text.append(text)
                took += 1
        return took

    def _relayed(self, ctx: RequestContext, tally: _Tally, data: bytes) -> bytes | None:
        """One event of the deployment's stream as the frame to send: the cost added to the usage chunk; None for a
        usage-only chunk the caller did not ask for."""
        event = orjson.loads(data)
        if "error" in event:
            tally.status = 502  # the deployment failed after the first byte; the error event is relayed
        tally.chunks += self._took(ctx, event)
        if event.get("usage"):
            usage = tally.usage = event["usage"]
            usage["cost_usd"] = nano_to_usd(ctx.route.price.cost_nano(*usage_tokens(usage)))
            if not event.get("choices") and not ctx.req.wants_usage:
                return None
            data = orjson.dumps(event)
        return b"data: " + data + b"\n\n"

    async def _stopped(self, ctx: RequestContext, tally: _Tally, final: bool = False) -> bytes | None:
        """The output check of the newest window when one is due: the error event that ends the stream when the
        answer is withheld, else None."""
        output = self.output
        if output is None or not (final or tally.chunks) or not output.due(ctx, tally.checked, final=final):
            return None
        tally.checked, stop = await output.window(ctx)
        if stop is not None:
            tally.status = 400
        return stop

    async def _frames(self, ctx: RequestContext, tally: _Tally, reader: SSEReader) -> AsyncGenerator[bytes, None]:
        """The frames to send, up to [DONE] or the frame that ends the stream early."""
        async for data in reader:
            frame = self._relayed(ctx, tally, data)
            if frame is None:
                continue
            if (stop := await self._stopped(ctx, tally)) is not None:
                yield stop
                return
            yield frame
        if not reader.done:
            # Closed without [DONE]: a close-delimited answer cannot tell a killed engine from an orderly end,
            # and relaying our own [DONE] would pass a truncated answer off as complete.
            tally.status, tally.code = 502, "upstream_stream_error"
            yield error_frame(APIError(502, tally.code, "the deployment's stream ended without [DONE]"))
            return
        yield await self._stopped(ctx, tally, final=True) or DONE

    async def stream(self, ctx: RequestContext) -> AsyncIterator[bytes]:
        """Forward SSE chunks; add the cost to the usage chunk; settle even if the client goes away."""
        assert ctx.up is not None
        resp = ctx.up.response
        tally = _Tally()
        try:
            async with contextlib.aclosing(
                self._frames(ctx, tally, SSEReader(_bounded(resp.content, self.limit)))
            ) as frames:
                async for frame in frames:
                    yield frame
        except _TooLarge:
            tally.status, tally.code = 502, "upstream_response_too_large"
            yield error_frame(too_large(self.limit))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The deployment broke mid-stream (cut, stalled, an over-long line, bad JSON): say so in the stream.
            tally.status, tally.code = 502, "upstream_stream_error"
            yield error_frame(APIError(502, tally.code, f"the deployment's stream broke: {type(exc).__name__}"))
        except Exception:
            tally.status, tally.code = 500, "internal_error"
            raise
        finally:
            resp.release()
            # client left or upstream cut before the usage chunk: meter what we saw
            usage = tally.usage or {
                "prompt_tokens": math.ceil(ctx.req.body_bytes / 4),
                "completion_tokens": tally.chunks,
            }
            span_usage(ctx, usage)
            with anyio.CancelScope(shield=True):
                await self.finish(ctx, tally.status, usage, error_code=tally.code)
