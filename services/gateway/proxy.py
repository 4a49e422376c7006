"""The gateway's request path: authenticate, apply the key's policy, reserve limits, route with fallback,
meter what was used, and emit one trace event. No HTTP framework code here."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from llmops_common.errors import APIError, error_body
from llmops_common.sse import DONE
from llmops_common.trace_events import EventEmitter
from services.gateway.auth import bearer_token
from services.gateway.call import Call, span_usage, trace_event, usage_tokens
from services.gateway.catalogue import RegistryCatalogue
from services.gateway.guardrails import GuardrailsClient, Verdict, blocked_error, message_text
from services.gateway.keys import KeyRecord, KeyStore
from services.gateway.limits import Limiter, LimitExceeded
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import nano_to_usd
from services.gateway.replies import as_envelope, error_frame, limit_error, replace_answer
from services.gateway.requests import PATHS, ClientRequest, Kind, parse_request
from services.gateway.routing import RouteTable
from services.gateway.upstream import NoDeploymentAvailable, UpstreamClient


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


class ProxyService:
    """Orchestrates one OpenAI-compatible request through the gateway's policies."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        limiter: Limiter,
        routes: RouteTable,
        upstream: UpstreamClient,
        metrics: GatewayMetrics,
        events: EventEmitter | None,
        default_max_tokens: int,
        guard: GuardrailsClient | None = None,
        catalogue: RegistryCatalogue | None = None,
        stream_window_chars: int = 512,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.routes = routes
        self.upstream = upstream
        self.metrics = metrics
        self.events = events
        self.default_max_tokens = default_max_tokens
        self.guard = guard
        self.catalogue = catalogue
        self._pending: set[asyncio.Task[Any]] = set()
        self.window = stream_window_chars

    async def authenticate(self, authorization: str | None) -> KeyRecord:
        """Resolve the bearer key; 401 for missing, unknown or revoked keys."""
        token = bearer_token(authorization)
        if token is None:
            self.metrics.auth_failures.labels("missing").inc()
            raise APIError(401, "missing_api_key", "no API key: send `Authorization: Bearer <key>`")
        record = await self.keys.lookup(token)
        if record is None:
            self.metrics.auth_failures.labels("unknown").inc()
            raise APIError(401, "invalid_api_key", "the API key is not valid")
        if record.status != "active":
            self.metrics.auth_failures.labels("revoked").inc()
            raise APIError(401, "revoked_api_key", "the API key has been revoked")
        return record

    def list_models(self, record: KeyRecord) -> dict[str, Any]:
        """Models this key may call, in /v1/models shape."""
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "llmops",
                "price_per_1m": {"input": r.price.input_per_1m, "output": r.price.output_per_1m},
                "version": self._version(name),
            }
            for name, r in sorted(self.routes.routes.items())
            if record.allows(name)
        ]
        return {"object": "list", "data": data}

    async def forward(self, record: KeyRecord, kind: Kind, raw: bytes, started: float) -> Completed | Streaming:
        """Policy, limits, routing and metering for one request."""
        req = parse_request(kind, raw, self.default_max_tokens)
        route = self.routes.get(req.model)
        if route is None:
            raise APIError(
                404,
                "model_not_found",
                f"model '{req.model}' does not exist; available: {', '.join(sorted(self.routes.routes))}",
                param="model",
            )
        if not record.allows(req.model):
            raise APIError(
                403,
                "model_not_allowed",
                f"this key may not use model '{req.model}'; allowed: {', '.join(record.allowed_models)}",
                param="model",
            )
        # Reserve from upper bounds: every token is at least one byte of the body, and output is capped.
        reserve_tokens = math.ceil(req.body_bytes / 4) + req.max_tokens
        reserve_cost = route.price.cost_nano(req.body_bytes, req.max_tokens)
        try:
            reservation = await self.limiter.admit(record, reserve_tokens, reserve_cost)
        except LimitExceeded as exc:
            self.metrics.limit_rejections.labels(record.team, exc.limit).inc()
            self.metrics.requests.labels(record.team, req.model, "402" if exc.is_budget else "429").inc()
            raise limit_error(exc) from None
        call = Call(record, req, route, reservation, started)
        if self.guard is not None:
            try:
                call.verdicts.append(await self._check_input(call))
            except APIError as exc:  # blocked, or guardrails down under a fail-closed policy
                blocked = exc.code == "guardrail_blocked"
                decision = "block" if blocked else "unavailable"
                call.verdicts.append(Verdict("input", decision, exc.extra.get("findings", [])))
                await self._finish(call, exc.status, None, error_code=exc.code)
                raise
        bodies = {dep.name: self._upstream_body(req, dep.model) for dep in route.deployments}
        try:
            call.up = await self.upstream.open(route, PATHS[kind], bodies, req.stream)
        except NoDeploymentAvailable as exc:
            if exc.all_overloaded:
                await self._finish(call, 429, None, error_code="upstream_overloaded")
                raise APIError(
                    429,
                    "upstream_overloaded",
                    f"every deployment of '{req.model}' is at capacity; retry shortly",
                    headers={"retry-after": "2"},
                ) from None
            status = 503 if exc.all_open else 502
            await self._finish(call, status, None, error_code="no_deployment_available")
            raise APIError(
                status,
                "no_deployment_available",
                f"no deployment of '{req.model}' could serve the request: " + "; ".join(exc.attempts),
            ) from None
        headers = {"x-llmops-deployment": call.up.deployment.name}
        if version := self._version(req.model):
            headers["x-llmops-model-version"] = version
        if call.verdicts:
            headers["x-llmops-guardrails"] = call.guardrails_header()
        if call.up.fallbacks:
            headers["x-llmops-fallbacks"] = str(call.up.fallbacks)
        if req.stream and call.up.response.status == 200:
            headers["x-llmops-overhead-ms"] = f"{(call.up.started - started) * 1000:.3f}"
            return Streaming(self._relay(call), headers)
        return await self._complete(call, headers)

    def _version(self, model: str) -> str | None:
        return self.catalogue.versions.get(model) if self.catalogue else None

    async def _check_input(self, call: Call) -> Verdict:
        """Input guardrails on the messages (or prompt); redactions are applied to the payload in place."""
        assert self.guard is not None
        team, project, payload = call.record.team, call.record.project, call.req.payload
        if call.req.kind == "chat":
            return await self.guard.check_messages(payload["messages"], team, project)
        prompts = payload["prompt"] if isinstance(payload["prompt"], list) else [payload["prompt"]]
        as_messages = [{"role": "user", "content": p} for p in prompts if isinstance(p, str)]
        verdict = await self.guard.check_messages(as_messages, team, project)
        payload["prompt"] = (
            [m["content"] for m in as_messages]
            if isinstance(payload["prompt"], list)
            else (as_messages[0]["content"] if as_messages else payload["prompt"])
        )
        return verdict

    async def _check_output(self, call: Call, text: str) -> Verdict:
        assert self.guard is not None
        prompt = None
        if call.req.kind == "chat":
            prompt = "\n".join(message_text(m) for m in call.req.payload["messages"])
        verdict = await self.guard.check("output", text, call.record.team, call.record.project, prompt=prompt)
        call.verdicts.append(verdict)
        return verdict

    def _upstream_body(self, req: ClientRequest, upstream_model: str) -> bytes:
        body = dict(req.payload, model=upstream_model)
        if req.stream:
            body["stream_options"] = {"include_usage": True}  # metering needs the final usage chunk
        return orjson.dumps(body)

    async def _complete(self, call: Call, headers: dict[str, str]) -> Completed:
        assert call.up is not None
        resp = call.up.response
        try:
            body = await resp.read()
        finally:
            resp.release()
        upstream_s = time.perf_counter() - call.up.started
        if resp.status != 200:
            await self._finish(call, resp.status, None, error_code="upstream_client_error")
            return Completed(resp.status, as_envelope(resp.status, body), headers)
        data = orjson.loads(body)
        usage = data.get("usage") or {}
        for choice in data.get("choices") or ():
            text = (choice.get("message") or {}).get("content") or choice.get("text")
            if text:
                call.response_text.append(text)
        if self.guard is not None and call.response_text:
            try:
                verdict = await self._check_output(call, "".join(call.response_text))
            except APIError as exc:  # guardrails down, fail-closed: the answer is withheld but still paid for
                await self._finish(call, exc.status, usage, error_code=exc.code)
                raise
            headers["x-llmops-guardrails"] = call.guardrails_header()
            if verdict.decision == "block":
                await self._finish(call, 400, usage, error_code="guardrail_blocked")
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
        self._in_background(self._finish(call, 200, usage))
        overhead_s = (time.perf_counter() - call.started) - upstream_s
        self.metrics.overhead.observe(overhead_s)
        headers["x-llmops-cost-usd"] = f"{nano_to_usd(cost):.9f}"
        headers["x-llmops-overhead-ms"] = f"{overhead_s * 1000:.3f}"
        return Completed(200, body, headers)

    async def _relay(self, call: Call) -> AsyncIterator[bytes]:
        """Forward SSE chunks; add the cost to the usage chunk; settle even if the client goes away."""
        assert call.up is not None
        resp = call.up.response
        usage: dict[str, Any] | None = None
        chunks = 0
        status = 200
        checked = 0  # characters of the answer already covered by an output check
        try:
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = orjson.loads(data)
                if call.ttft_s is None:
                    call.ttft_s = time.perf_counter() - call.started
                    self.metrics.ttft.labels(call.req.model).observe(call.ttft_s)
                if "error" in event:
                    status = 502  # the deployment failed after the first byte; the error event is relayed
                for choice in event.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if text:
                        call.response_text.append(text)
                        chunks += 1
                if event.get("usage"):
                    usage = event["usage"]
                    usage["cost_usd"] = nano_to_usd(call.route.price.cost_nano(*usage_tokens(usage)))
                    if not event.get("choices") and not call.req.wants_usage:
                        continue  # the caller did not ask for the usage chunk
                    data = orjson.dumps(event)
                if self.guard is not None and chunks and self._window_due(call, checked):
                    checked, stop = await self._check_stream_window(call)
                    if stop is not None:
                        status = 400
                        yield stop
                        return
                yield b"data: " + data + b"\n\n"
            if self.guard is not None and call.response_text and self._window_due(call, checked, final=True):
                _, stop = await self._check_stream_window(call)
                if stop is not None:
                    status = 400
                    yield stop
                    return
            yield DONE
        finally:
            resp.release()
            if usage is None:  # client left or upstream cut: meter what we saw
                usage = {"prompt_tokens": math.ceil(call.req.body_bytes / 4), "completion_tokens": chunks}
            span_usage(call, usage)
            with anyio.CancelScope(shield=True):
                await self._finish(call, status, usage)

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)  # keep a reference until done (asyncio holds tasks weakly)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for background settlements (shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _window_due(self, call: Call, checked: int, final: bool = False) -> bool:
        produced = sum(map(len, call.response_text))
        return produced > checked and (final or produced - checked >= self.window)

    async def _check_stream_window(self, call: Call) -> tuple[int, bytes | None]:
        """Check the last window of the streamed answer; a block ends the stream with an error event."""
        text = "".join(call.response_text)
        try:
            verdict = await self._check_output(call, text[-2 * self.window :])
        except APIError as exc:
            return len(text), error_frame(exc)
        if verdict.decision == "block":
            return len(text), error_frame(blocked_error("output", verdict.findings))
        return len(text), None

    async def _finish(
        self, call: Call, status: int, usage: dict[str, Any] | None, error_code: str | None = None
    ) -> int:
        """Settle the reservation, record metrics and emit the trace event; returns the cost in nano-USD."""
        prompt_tokens, completion_tokens = usage_tokens(usage or {})
        cost = call.route.price.cost_nano(prompt_tokens, completion_tokens)
        await self.limiter.settle(call.reservation, prompt_tokens + completion_tokens, cost)
        team, model = call.record.team, call.req.model
        elapsed = time.perf_counter() - call.started
        self.metrics.requests.labels(team, model, str(status)).inc()
        self.metrics.latency.labels(model).observe(elapsed)
        if prompt_tokens or completion_tokens:
            self.metrics.tokens.labels(team, model, "prompt").inc(prompt_tokens)
            self.metrics.tokens.labels(team, model, "completion").inc(completion_tokens)
            self.metrics.cost.labels(team, model).inc(nano_to_usd(cost))
        if self.events is not None:
            self.events.emit(
                trace_event(
                    call, status, prompt_tokens, completion_tokens, cost, elapsed, error_code, self._version(model)
                )
            )
        return cost
