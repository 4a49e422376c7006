"""Client of the registry service (RAG_REGISTRY_URL): the answer prompt at an alias, and dataset versions.

The prompt is polled, so a promoted version is used without a restart. When the registry cannot supply a
usable template the service keeps answering: with the last good registry version, or at start with the
shipped template, reported as `rag-answer@2 (shipped)` so nobody mistakes it for a registry version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx

from services.rag.prompts import ANSWER_VARIABLES, PromptTemplate, PromptUnusable, from_registry

log = logging.getLogger("rag.registry")


def _headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _error_code(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200]


class RegistryPrompts:
    """The template at GET /v1/prompts/{name}/aliases/{alias}, refreshed every `refresh_s` in the background."""

    def __init__(
        self,
        registry_url: str,
        name: str,
        alias: str,
        shipped: PromptTemplate,
        *,
        refresh_s: float,
        timeout_s: float,
        token: str | None = None,
        required: Iterable[str] = ANSWER_VARIABLES,
    ) -> None:
        self.url = f"{registry_url.rstrip('/')}/v1/prompts/{name}/aliases/{alias}"
        self.refresh_s = refresh_s
        self.required = frozenset(required)
        self._http = httpx.AsyncClient(timeout=timeout_s, headers=_headers(token))
        self._current = shipped.as_fallback()
        self.refreshed_at: float | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def current(self) -> PromptTemplate:
        """The template to answer with now (read once per answer, so one answer never mixes two versions)."""
        return self._current

    async def refresh(self) -> bool:
        """One poll; False (and the template in use kept) when the registry cannot supply a usable version."""
        try:
            resp = await self._http.get(self.url)
        except httpx.HTTPError as exc:
            return self._keep(f"registry unreachable: {exc!r}")
        if resp.status_code != 200:
            return self._keep(f"registry answered {resp.status_code} ({_error_code(resp)}) for {self.url}")
        try:
            template = from_registry(resp.json(), self.required)
        except (PromptUnusable, ValueError, KeyError, TypeError) as exc:
            return self._keep(f"registry prompt at {self.url} is not usable: {exc}")
        if template != self._current:
            log.info("answer prompt is now %s (from the registry)", template.id)
        self._current, self.refreshed_at, self.last_error = template, time.time(), None
        return True

    def _keep(self, reason: str) -> bool:
        if reason != self.last_error:  # one warning per distinct problem, not one per poll
            log.warning("answer prompt not refreshed; still answering with %s: %s", self._current.id, reason)
        self.last_error = reason
        return False

    async def start(self) -> None:
        """First poll now (bounded by the timeout), then poll in the background."""
        if not await self.refresh():
            log.warning(
                "registry has no usable answer prompt at start; answering with the shipped template, "
                "reported as %s until the registry supplies one",
                self._current.id,
            )
        self._task = asyncio.create_task(self._loop(), name="registry-prompt")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    async def aclose(self) -> None:
        """Stop polling and close the connection pool."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    def status(self) -> dict[str, Any]:
        """Where the template comes from, for GET /v1/prompts/answer."""
        return {"registry_url": self.url, "refreshed_at": self.refreshed_at, "registry_error": self.last_error}


class RegistryUnavailable(Exception):
    """The registry could not register a dataset version (down, refused the token, rejected the body)."""


class DatasetRegistrar:
    """Registers dataset versions (POST /v1/datasets/{name}/versions; needs a token with the member role)."""

    def __init__(self, registry_url: str, token: str | None, timeout_s: float) -> None:
        self.base = registry_url.rstrip("/") + "/v1/datasets"
        self.headers = _headers(token)
        self.timeout_s = timeout_s

    def register(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Register the next version; the same content again resolves to the version that already has it."""
        with httpx.Client(timeout=self.timeout_s, headers=self.headers) as client:
            try:
                resp = client.post(f"{self.base}/{name}/versions", json=body)
                if resp.status_code == 400 and _error_code(resp) == "unknown_run" and body.get("producer_run_id"):
                    # Our MLflow is not the registry's: keep the run id in the description, not as a link.
                    body = {**body, "producer_run_id": None}
                    resp = client.post(f"{self.base}/{name}/versions", json=body)
                if resp.status_code == 201:
                    out = resp.json()
                    return {"name": out["name"], "version": out["version"], "digest": out["digest"], "created": True}
                existing = _existing_version(resp)
                if existing is not None:
                    found = client.get(f"{self.base}/{name}/versions/{existing}")
                    if found.status_code == 200:
                        out = found.json()
                        return {"name": name, "version": out["version"], "digest": out["digest"], "created": False}
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                raise RegistryUnavailable(f"registry unreachable: {exc!r}") from exc
        raise RegistryUnavailable(f"registry answered {resp.status_code}: {resp.text[:300]}")


def _existing_version(resp: httpx.Response) -> int | None:
    """The version a 409 duplicate_dataset names (same content hash registered before), if any."""
    if resp.status_code != 409:
        return None
    try:
        err = resp.json()["error"]
    except (ValueError, KeyError, TypeError):
        return None
    version = err.get("existing_version") if err.get("code") == "duplicate_dataset" else None
    return int(version) if version is not None else None
