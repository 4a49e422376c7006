"""The one client of the registry service's REST API (services/registry), used by every service and job.

What the others ask the registry: which model version an alias points at (inference, guardrails), which prompt
version (RAG), the production catalogue with prices (gateway), and to record dataset versions, model versions and
their evaluation evidence (feedback, RAG, the training and fine-tuning jobs). One place for the base URL, the
Bearer token, the timeouts and the one error type, `RegistryError`, which carries the HTTP status and the
registry's error code (`None` for both when the registry could not be reached at all).

Two faces over llmops_common.http (aiohttp): `RegistryClient` (blocking: jobs, the guardrails watcher thread) and
`AsyncRegistryClient` (services' event loops). Each request is described once (`_Call`) and checked once
(`_result`); a face only sends it. Pass `http=` to inject a client (a fake one in tests); one passed in is not
closed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote, unquote, urlparse

from llmops_common.http import AsyncHTTP, BlockingHTTP, HTTPError, Reply
from llmops_common.tasks import cancel_and_wait

DEFAULT_TIMEOUT_S = 5.0


class RegistryError(Exception):
    """The registry could not be asked, or refused: `status` and `code` are None when it was not reached;
    `error` is the registry's error envelope (`{"code", "message", ...}`) when it sent one."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, error: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.error = status, code, error or {}


def bearer(token: str | None) -> dict[str, str]:
    """The authorization header for a registry token (none without one: the dev registry's anonymous access)."""
    return {"authorization": f"Bearer {token}"} if token else {}


def error_envelope(resp: Reply) -> dict[str, Any]:
    """The registry's error envelope (`{"error": {"code": ..., "message": ...}}`), or {} when the body has none."""
    try:
        error = resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) and "code" in error else {}


@dataclass(frozen=True)
class _Call:
    """One request and what counts as its answer: `ok` statuses return JSON, `none_on` statuses return None."""

    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200,)
    none_on: tuple[int, ...] = ()


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _result(call: _Call, resp: Reply) -> Any:
    if resp.status_code in call.none_on:
        return None
    if resp.status_code not in call.ok:
        error = error_envelope(resp)
        code = str(error["code"]) if error else None
        raise RegistryError(
            f"registry answered {resp.status_code} ({code or resp.text[:200]}) for {call.method} {call.path}",
            status=resp.status_code,
            code=code,
            error=error,
        )
    try:
        return resp.json()
    except ValueError as exc:
        raise RegistryError(f"registry answered {call.method} {call.path} with no JSON: {exc}") from exc


def _unreachable(call: _Call, exc: Exception) -> RegistryError:
    return RegistryError(f"registry unreachable for {call.method} {call.path}: {exc!r}")


# --- the calls, described once for both faces


def model_alias_call(name: str, alias: str) -> _Call:
    """GET the model version an alias points at; None when the alias is not set (404)."""
    return _Call("GET", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}", none_on=(404,))


def prompt_alias_call(name: str, alias: str) -> _Call:
    """GET the prompt version an alias points at."""
    return _Call("GET", f"/v1/prompts/{_seg(name)}/aliases/{_seg(alias)}")


def catalogue_call(alias: str) -> _Call:
    """GET the models whose `alias` is set, with versions and prices."""
    return _Call("GET", f"/v1/catalogue?alias={_seg(alias)}")


def create_dataset_call(name: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> _Call:
    """POST a new dataset version."""
    return _Call("POST", f"/v1/datasets/{_seg(name)}/versions", body, headers or {}, ok=(200, 201))


H = TypeVar("H", BlockingHTTP, AsyncHTTP)


class _Base(Generic[H]):
    """Base URL, token and the HTTP client of a face; `http=` injects one (then not closed here)."""

    _client_type: type[H]

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S, http: H | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = bearer(token)
        self._own = http is None
        self.http: H = http or self._client_type(timeout_s=timeout_s)

    def url(self, call: _Call) -> str:
        return self.base_url + call.path

    def request_args(self, call: _Call) -> dict[str, Any]:
        """The request arguments for a call: this client's token, the call's own headers over it."""
        return {"method": call.method, "url": self.url(call), "json": call.body, "headers": self.headers | call.headers}

    def describe(self, call: _Call) -> str:
        """The full URL of a call, for status pages and logs."""
        return self.url(call)


class RegistryClient(_Base[BlockingHTTP]):
    """The sync face: jobs (training, fine-tuning), the guardrails model watcher's thread, RAG's ingestion."""

    _client_type = BlockingHTTP

    def send(self, call: _Call) -> Any:
        """Send one call; its JSON (or None where the call allows), else RegistryError."""
        try:
            resp = self.http.request(**self.request_args(call))
        except HTTPError as exc:
            raise _unreachable(call, exc) from exc
        return _result(call, resp)

    def close(self) -> None:
        """Release the connections (only of a client made here)."""
        if self._own:
            self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- reads
    def model_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        """The model version (the registry's ModelVersion JSON) `name@alias` points at; None when not set."""
        result: dict[str, Any] | None = self.send(model_alias_call(name, alias))
        return result

    def fetch(self, uri: str) -> bytes:
        """The bytes at an artifact URI: a file:// path, or an http(s):// URL (the registry stores URIs)."""
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path)).read_bytes()
        if parsed.scheme not in ("http", "https"):
            raise RegistryError(f"cannot fetch artifact URI scheme {parsed.scheme!r} ({uri})")
        try:
            resp = self.http.get(uri, headers=self.headers)
        except HTTPError as exc:
            raise RegistryError(f"artifact unreachable: {uri}: {exc!r}") from exc
        if resp.status_code != 200:
            raise RegistryError(f"artifact {uri} answered {resp.status_code}", status=resp.status_code)
        return resp.content

    def dataset_version(self, name: str, version: int | str) -> dict[str, Any]:
        """One dataset version."""
        result: dict[str, Any] = self.send(_Call("GET", f"/v1/datasets/{_seg(name)}/versions/{_seg(version)}"))
        return result

    # --- writes
    def create_dataset_version(
        self, name: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Register the next dataset version of `name`."""
        result: dict[str, Any] = self.send(create_dataset_call(name, body, headers))
        return result

    def ensure_dataset_version(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """`{"name", "version"}` of the version of `name` whose digest is `body["digest"]`, registered with `body`
        when none has it (a rerun on the same data reuses the version instead of adding a copy)."""
        listed = self.send(_Call("GET", f"/v1/datasets/{_seg(name)}/versions", none_on=(404,))) or []
        for version in listed:
            if version.get("digest") == body["digest"]:
                return {"name": name, "version": int(version["version"])}
        return {"name": name, "version": int(self.create_dataset_version(name, body)["version"])}

    def create_model_version(self, name: str, body: dict[str, Any]) -> str:
        """Register a model version; returns its version number as a string."""
        return str(self.send(_Call("POST", f"/v1/models/{_seg(name)}/versions", body, ok=(200, 201)))["version"])

    def record_evaluation(self, model: str, version: str, metrics: dict[str, float], params: dict[str, str],
                          evaluator_token: str) -> str:  # fmt: skip
        """Record `metrics` as a platform evaluation run with the evaluator's own token; returns the run id."""
        body = {"model": model, "version": version, "metrics": metrics, "params": params}
        call = _Call("POST", "/v1/evaluations", body, bearer(evaluator_token), ok=(200, 201))
        return str(self.send(call)["run_id"])

    def attach_evaluation(self, model: str, version: str, run_id: str) -> None:
        """Attach an evaluation run to a model version as its evidence (with this client's token)."""
        path = f"/v1/models/{_seg(model)}/versions/{_seg(version)}/evals"
        self.send(_Call("POST", path, {"run_id": run_id}, ok=(200, 201)))

    def policies(self) -> list[dict[str, Any]]:
        """The promotion policies (admin)."""
        result: list[dict[str, Any]] = self.send(_Call("GET", "/v1/policies"))
        return result

    def put_policy(self, name: str, body: dict[str, Any]) -> None:
        """Create or replace a promotion policy (admin)."""
        self.send(_Call("PUT", f"/v1/policies/{_seg(name)}", body, ok=(200, 201)))


class AsyncRegistryClient(_Base[AsyncHTTP]):
    """The async face: the services' pollers (inference alias, RAG prompt, gateway catalogue) and feedback's export."""

    _client_type = AsyncHTTP

    async def send(self, call: _Call) -> Any:
        """Send one call; its JSON (or None where the call allows), else RegistryError."""
        try:
            resp = await self.http.request(**self.request_args(call))
        except HTTPError as exc:
            raise _unreachable(call, exc) from exc
        return _result(call, resp)

    async def aclose(self) -> None:
        """Release the connections (only of a client made here)."""
        if self._own:
            await self.http.aclose()

    async def model_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        """The model version `name@alias` points at; None when the alias is not set."""
        result: dict[str, Any] | None = await self.send(model_alias_call(name, alias))
        return result

    async def prompt_alias(self, name: str, alias: str) -> dict[str, Any]:
        """The prompt version `name@alias` points at."""
        result: dict[str, Any] = await self.send(prompt_alias_call(name, alias))
        return result

    async def catalogue(self, alias: str = "production") -> dict[str, Any]:
        """`{"alias", "models": [{name, version, price_per_1m_input, price_per_1m_output, ...}]}`."""
        result: dict[str, Any] = await self.send(catalogue_call(alias))
        return result

    async def create_dataset_version(
        self, name: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Register the next dataset version of `name`."""
        result: dict[str, Any] = await self.send(create_dataset_call(name, body, headers))
        return result


class Poller:
    """Calls `poll()` every `interval_s` seconds in a background task: the one loop behind the services' registry
    pollers (gateway catalogue, RAG prompt, inference aliases). `poll` handles its own errors; one that escapes
    is logged by asyncio and ends the loop, so pollers catch RegistryError and keep what they have."""

    def __init__(self, poll: Callable[[], Awaitable[Any]], interval_s: float, name: str) -> None:
        self.poll, self.interval_s, self.name = poll, interval_s, name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling (the first poll after one interval: callers poll once themselves at start)."""
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.poll()

    async def stop(self) -> None:
        """Stop polling and wait for the task to end."""
        await cancel_and_wait(self._task)
        self._task = None
