"""Any OpenAI-compatible server as the engine: vLLM's OpenAI server on GPU hosts, or llama.cpp's HTTP server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from llmops_common.sse import SSEReader
from llmops_common.telemetry import inject_trace_headers
from services.inference.engines.base import EngineError, EngineUnavailable, Kind

if TYPE_CHECKING:
    from services.inference.registry_source import VersionSpec
    from services.inference.settings import InferenceSettings

log = logging.getLogger("inference.openai_upstream")

_PATHS = {"chat": "/chat/completions", "completion": "/completions"}
# (HTTP status, error body) -> the exception to raise; the llama.cpp child maps its own error objects.
ErrorMapper = Callable[[int, bytes], Exception]


def upstream_error(status: int, body: bytes) -> Exception:
    """Keep the upstream's 4xx as a client error (with its message); anything else is unavailability."""
    try:
        err = orjson.loads(body).get("error", {})
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (orjson.JSONDecodeError, AttributeError):
        message = body[:300].decode("utf-8", "replace")
    message = message or f"upstream answered {status}"
    if 400 <= status < 500 and status != 429:
        lowered = message.lower()
        about_context = ("context" in lowered and "length" in lowered) or "context size" in lowered
        code = "context_length_exceeded" if about_context else "invalid_request"
        return EngineError(status, code, message)
    return EngineUnavailable(f"upstream answered {status}: {message}")


class OpenAIUpstreamEngine:
    """Forwards requests to `base_url` (ending in /v1), renaming the model to the upstream's name."""

    name = "openai-upstream"

    def __init__(
        self,
        base_url: str,
        *,
        upstream_model: str,
        api_key: str | None,
        context_length: int,
        timeout_s: float,
        map_error: ErrorMapper = upstream_error,
        close_streams: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # llama.cpp's server announces keep-alive on a stream's response but closes the connection once the stream
        # ends; aiohttp pools it before it sees the close, so the next request was written to a dead socket (half of
        # all streams, measured): a failed attempt and a resend each time, and a 503 for a healthy engine when the
        # resend met another dead one (bench/inference_concurrency.py's burst). `Connection: close` on streams says
        # what the server does anyway: a fresh connection per stream (a loopback connect), never a pooled dead one.
        self.close_streams = close_streams
        self._map_error = map_error
        self.upstream_model = upstream_model
        self.api_key = api_key
        self.context_length = context_length
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=5)
        self._session: aiohttp.ClientSession | None = None
        self._ready = False

    @property
    def _headers(self) -> dict[str, str]:
        headers = inject_trace_headers({"content-type": "application/json"})
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    async def start(self) -> None:
        """Open the connection pool and learn the upstream's context length when it reports one."""
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        await self.refresh_ready()

    async def refresh_ready(self) -> bool:
        """Probe /models; vLLM reports `max_model_len`, llama.cpp `meta.n_ctx`."""
        assert self._session is not None
        try:
            async with self._session.get(f"{self.base_url}/models", headers=self._headers) as resp:
                if resp.status != 200:
                    self._ready = False
                    return False
                data = await resp.json(loads=orjson.loads)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream not reachable", extra={"upstream": self.base_url, "error": str(exc)})
            self._ready = False
            return False
        for model in data.get("data", []):
            reported = model.get("max_model_len") or (model.get("meta") or {}).get("n_ctx")
            if reported:
                self.context_length = int(reported)
                break
        self._ready = True
        return True

    async def stop(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()

    def is_ready(self) -> bool:
        """True when the last probe of the upstream succeeded."""
        return self._ready

    def restore_priority(self) -> None:
        """Nothing to restore: the upstream is another server."""

    def _body(self, payload: dict[str, Any], stream: bool) -> bytes:
        body = dict(payload, model=self.upstream_model, stream=stream)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    async def _post(self, kind: Kind, body: bytes, stream: bool = False) -> aiohttp.ClientResponse:
        """POST once more if a pooled keep-alive connection turns out to be closed before the body was sent."""
        assert self._session is not None
        url = self.base_url + _PATHS[kind]
        headers = self._headers
        if stream and self.close_streams:
            headers["connection"] = "close"
        try:
            return await self._session.post(url, data=body, headers=headers)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            return await self._session.post(url, data=body, headers=headers)

    async def generate(self, kind: Kind, payload: dict[str, Any]) -> dict[str, Any]:
        """POST and return the parsed body."""
        try:
            async with await self._post(kind, self._body(payload, False)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise self._map_error(resp.status, raw)
                return orjson.loads(raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineUnavailable(f"upstream unreachable: {exc}") from exc

    async def stream(self, kind: Kind, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST with stream=true and yield each SSE data event as a dict."""
        try:
            async with await self._post(kind, self._body(payload, True), stream=True) as resp:
                if resp.status != 200:
                    raise self._map_error(resp.status, await resp.read())
                async for data in SSEReader(resp.content):
                    event = orjson.loads(data)
                    if "error" in event:
                        err = event["error"]
                        raise self._map_error(int(err.get("code", 500) or 500), data)
                    yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineUnavailable(f"upstream unreachable: {exc}") from exc


def build(settings: InferenceSettings, spec: VersionSpec | None) -> OpenAIUpstreamEngine:
    """The engines `openai` and `vllm`: the server at INFERENCE_UPSTREAM_URL, under its own model name."""
    if not settings.upstream_url:
        raise ValueError("INFERENCE_UPSTREAM_URL is required for the openai/vLLM engine")
    args = spec.engine_args if spec else {}
    return OpenAIUpstreamEngine(
        settings.upstream_url,
        upstream_model=str(args.get("served_model_name") or settings.upstream_model or settings.served_model_name),
        api_key=settings.upstream_api_key,
        context_length=spec.context_length if spec else settings.context_length,
        timeout_s=settings.upstream_timeout_s,
    )
