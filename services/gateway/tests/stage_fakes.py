"""In-process fakes for the stage tests (test_stages_*.py): no subprocess, no Redis, no HTTP."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry

from services.gateway.call import Call
from services.gateway.guardrails import Verdict
from services.gateway.keys import KeyRecord
from services.gateway.limits import LimitExceeded, Reservation
from services.gateway.metrics import GatewayMetrics
from services.gateway.pricing import Price
from services.gateway.requests import ClientRequest
from services.gateway.routes_config import CacheFields
from services.gateway.routing import Deployment, ModelRoute, RouteTable
from services.gateway.upstream import UpstreamResponse

MODEL = "m"


def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry())


def sample(m: GatewayMetrics, name: str, **labels: str) -> float:
    """A metric's value as Prometheus exposes it (0 when the series does not exist)."""
    return m.registry.get_sample_value(name, labels) or 0.0


def record(**fields: Any) -> KeyRecord:
    base: dict[str, Any] = {"key_id": "key-a", "team": "team-a", "project": "proj-a", "name": "n", "key_hint": "…a"}
    return KeyRecord(**{**base, **fields})


def route(cache: CacheFields | None = None, price: Price | None = None) -> ModelRoute:
    deps = [Deployment("d1", "http://d1/v1", "up-m"), Deployment("d2", "http://d2/v1", "up-m2")]
    return ModelRoute(MODEL, price or Price(1.0, 2.0), deps, cache=cache or CacheFields())


def routes(r: ModelRoute | None = None) -> RouteTable:
    return RouteTable([r or route()])


def request(stream: bool = False, content: str = "hi", **payload: Any) -> ClientRequest:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 16, **payload}
    return ClientRequest("chat", MODEL, stream, False, 16, body, 50)


def context(req: ClientRequest | None = None, r: ModelRoute | None = None, **fields: Any) -> Call:
    reservation = Reservation("tk", "tt", "sk", "st", 10, 100, "mk")
    return Call(record(), req or request(), r or route(), reservation, time.perf_counter(), **fields)


class Limiter:
    """Admits (or refuses with `refuse`), and records settlements and the pipeline writes they carry."""

    def __init__(self, refuse: LimitExceeded | None = None, applied: bool = True) -> None:
        self.refuse = refuse
        self.applied = applied
        self.admitted: list[tuple[str, int, int]] = []
        self.settled: list[tuple[int, int]] = []
        self.writes: list[tuple[str, dict[str, Any]]] = []

    async def admit(self, rec: KeyRecord, tokens: int, cost: int) -> Reservation:
        if self.refuse is not None:
            raise self.refuse
        self.admitted.append((rec.key_id, tokens, cost))
        return Reservation("tk", "tt", "sk", "st", tokens, cost, "mk")

    async def settle(self, reservation: Reservation, tokens: int, cost: int, extra: Any = None) -> bool:
        self.settled.append((tokens, cost))
        if extra is not None:
            extra(self)  # the pipeline: this fake records the XADD
        return self.applied

    def xadd(self, stream: str, fields: dict[str, Any], **_: Any) -> None:
        self.writes.append((stream, fields))


class Emitter:
    stream, maxlen = "llmops:events", 1000

    def __init__(self) -> None:
        self.buffered: list[Any] = []

    def emit(self, event: Any) -> None:
        self.buffered.append(event)


class Finish:
    """Stands in for Settle.finish: records each call's (status, usage, error code)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, Any] | None, str | None]] = []

    async def __call__(self, ctx: Call, status: int, usage: Any, error_code: str | None = None) -> int:
        ctx.recorded = True
        self.calls.append((status, usage, error_code))
        return 0


class Guard:
    """A GuardrailsClient that answers fixed verdicts (or raises `error`)."""

    def __init__(self, output: Verdict | None = None, error: Exception | None = None, redact: str | None = None):
        self.output = output or Verdict("output", "allow")
        self.error = error
        self.redact = redact
        self.output_texts: list[str] = []

    async def check_input(self, segments: list[Any], team: str, project: str) -> tuple[Verdict, list[str | None]]:
        if self.error is not None:
            raise self.error
        if self.redact is not None:
            return Verdict("input", "redact"), [self.redact for _ in segments]
        return Verdict("input", "allow"), [None for _ in segments]

    async def check(self, stage: str, text: str, team: str, project: str, **extra: Any) -> Verdict:
        if self.error is not None:
            raise self.error
        self.output_texts.append(text)
        return self.output


class Content:
    """aiohttp's StreamReader, as far as the relay reads it: lines (streams) or chunks (whole answers)."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    def __aiter__(self) -> Any:
        return self._lines()

    async def _lines(self) -> Any:
        for line in self.lines:
            yield line

    def iter_chunked(self, size: int) -> Any:
        return self._lines()


class Response:
    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        lines: list[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers or {}  # lower-case names (aiohttp's are case-insensitive)
        self.content = Content(lines if lines is not None else [body])
        self.content_length: int | None = None if lines is not None else len(body)
        self.released = self.closed = False

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


def upstream(resp: Response, fallbacks: int = 0) -> UpstreamResponse:
    return UpstreamResponse(route().deployments[0], resp, time.perf_counter(), fallbacks)  # type: ignore[arg-type]


def sse(*events: dict[str, Any], done: bool = True) -> list[bytes]:
    import orjson

    lines = [b"data: " + orjson.dumps(e) + b"\n" for e in events]
    return lines + ([b"data: [DONE]\n"] if done else [])
