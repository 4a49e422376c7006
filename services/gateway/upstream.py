"""Calls to deployments: retries with backoff, fallback to the next deployment before the first byte,
and circuit breakers that skip a failing deployment for a cool-down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiohttp

from llmops_common.telemetry import inject_trace_headers
from services.gateway.metrics import GatewayMetrics
from services.gateway.routing import CircuitBreaker, Deployment, ModelRoute, plan

log = logging.getLogger("gateway.upstream")

# Statuses that say "this deployment cannot serve now" rather than "your request is wrong".
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class NoDeploymentAvailable(Exception):
    """Every deployment failed or has an open circuit; `attempts` says what happened to each."""

    def __init__(self, model: str, attempts: list[str], all_open: bool, retry_after_s: float = 0.0) -> None:
        super().__init__(f"{model}: " + "; ".join(attempts))
        self.model = model
        self.attempts = attempts
        self.all_open = all_open
        self.retry_after_s = retry_after_s  # when all are open: until the first circuit lets a request through

    @property
    def all_overloaded(self) -> bool:
        """Every deployment answered 429 or has an open circuit, and at least one answered 429: the model is at
        capacity, so the caller should back off (429 with Retry-After), not see a 502."""
        return any(a.endswith("status_429") for a in self.attempts) and all(
            a.endswith(("status_429", "circuit open")) for a in self.attempts
        )


class _AtCapacity(str):
    """A deployment's 429: it is healthy and shedding load, not failing. Its Retry-After rides along."""

    retry_after_s: float = 1.0


@dataclass
class UpstreamResponse:
    """An open response from the deployment that answered (the caller must release it)."""

    deployment: Deployment
    response: aiohttp.ClientResponse
    started: float  # perf_counter when the successful attempt was sent
    fallbacks: int


class UpstreamClient:
    """One aiohttp connection pool shared by every deployment."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool (keep-alive connections are what keeps the overhead in microseconds)."""
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def stop(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()

    async def open(self, route: ModelRoute, path: str, bodies: dict[str, bytes], stream: bool) -> UpstreamResponse:
        """Send to the first deployment that answers; `bodies` maps deployment name -> request body."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        attempts: list[str] = []
        skipped_open = 0
        fallbacks = 0
        waits: list[float] = []
        at_capacity = False
        for dep in plan(route):
            if not dep.breaker.allow():
                skipped_open += 1
                waits.append(dep.breaker.retry_after_s())
                attempts.append(f"{dep.name}: circuit open")
                continue
            for attempt in range(dep.retries + 1):
                if attempt:
                    await asyncio.sleep(dep.backoff_s * (2 ** (attempt - 1)))
                started = time.perf_counter()
                failure = await self._try(dep, path, bodies[dep.name], stream)
                if isinstance(failure, aiohttp.ClientResponse):
                    dep.breaker.record_success()
                    return UpstreamResponse(dep, failure, started, fallbacks)
                attempts.append(f"{dep.name}: {failure}")
                self.metrics.upstream_errors.labels(dep.name, failure.split(" ")[0]).inc()
                if isinstance(failure, _AtCapacity):
                    # Admission control said "later": retrying it at once only re-queues the load it shed, and it
                    # is no fault, so the circuit stays as it is (429s had opened it, turning shed load into 30 s
                    # of 503s). Try the next deployment; the client gets the deployment's Retry-After.
                    waits.append(failure.retry_after_s)
                    at_capacity = True
                    if dep.breaker.state == CircuitBreaker.HALF_OPEN:
                        dep.breaker.record_success()  # the probe was answered: the deployment is back
                    break
                dep.breaker.record_failure()
                if dep.breaker.state != CircuitBreaker.CLOSED:
                    break  # the circuit just opened: stop hammering this deployment
            fallbacks += 1
            self.metrics.fallbacks.labels(route.name, dep.name).inc()
        all_open = skipped_open == len(route.deployments)
        at_capacity = at_capacity or all_open
        raise NoDeploymentAvailable(route.name, attempts, all_open, min(waits) if at_capacity and waits else 0.0)

    async def _try(self, dep: Deployment, path: str, body: bytes, stream: bool) -> aiohttp.ClientResponse | str:
        """One attempt: the open response when usable, else a short reason string."""
        assert self._session is not None
        headers = inject_trace_headers({"content-type": "application/json"})
        if dep.api_key:
            headers["authorization"] = f"Bearer {dep.api_key}"
        timeout = (
            aiohttp.ClientTimeout(total=None, sock_connect=dep.connect_timeout_s, sock_read=dep.timeout_s)
            if stream
            else aiohttp.ClientTimeout(total=dep.timeout_s, sock_connect=dep.connect_timeout_s)
        )
        try:
            resp = await self._session.post(dep.url + path, data=body, headers=headers, timeout=timeout)
        except TimeoutError:
            return f"timeout after {dep.timeout_s:g}s"
        except aiohttp.ClientError as exc:
            return f"connection_error ({type(exc).__name__}: {exc})"
        if resp.status == 429:
            refused = _AtCapacity("status_429")
            with contextlib.suppress(ValueError):  # an HTTP date, or garbage: keep the one-second default
                refused.retry_after_s = max(1.0, float(resp.headers.get("retry-after", "1")))
            resp.release()
            return refused
        if resp.status in RETRYABLE_STATUS:
            resp.release()
            return f"status_{resp.status}"
        return resp
