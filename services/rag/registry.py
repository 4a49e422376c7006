"""Client of the registry service (RAG_REGISTRY_URL): the answer prompt at an alias, and dataset versions.

The prompt is polled, so a promoted version is used without a restart. When the registry cannot supply a
usable template the service keeps answering: with the last good registry version, or at start with the
shipped template, reported as `rag-answer@2 (shipped)` so nobody mistakes it for a registry version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from llmops_common.registry_client import AsyncRegistryClient, Poller, RegistryClient, RegistryError, prompt_alias_call
from services.rag.prompts import ANSWER_VARIABLES, PromptTemplate, PromptUnusable, from_registry

log = logging.getLogger("rag.registry")


class RegistryPrompts:
    """The template at GET /v1/prompts/{name}/aliases/{alias}, refreshed every `refresh_s` in the background."""

    def __init__(
        self,
        client: AsyncRegistryClient,
        name: str,
        alias: str,
        shipped: PromptTemplate,
        *,
        refresh_s: float,
        required: Iterable[str] = ANSWER_VARIABLES,
    ) -> None:
        self.client, self.name, self.alias = client, name, alias
        self.url = client.describe(prompt_alias_call(name, alias))
        self.refresh_s = refresh_s
        self.required = frozenset(required)
        self._current = shipped.as_fallback()
        self.refreshed_at: float | None = None
        self.last_error: str | None = None
        self._poller = Poller(self.refresh, refresh_s, "registry-prompt")

    def current(self) -> PromptTemplate:
        """The template to answer with now (read once per answer, so one answer never mixes two versions)."""
        return self._current

    async def refresh(self) -> bool:
        """One poll; False (and the template in use kept) when the registry cannot supply a usable version."""
        try:
            body = await self.client.prompt_alias(self.name, self.alias)
        except RegistryError as exc:
            return self._keep(str(exc))
        try:
            template = from_registry(body, self.required)
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
        self._poller.start()

    async def aclose(self) -> None:
        """Stop polling and close the connection pool."""
        await self._poller.stop()
        await self.client.aclose()

    def status(self) -> dict[str, Any]:
        """Where the template comes from, for GET /v1/prompts/answer."""
        return {"registry_url": self.url, "refreshed_at": self.refreshed_at, "registry_error": self.last_error}


class DatasetRegistrar:
    """Registers dataset versions (POST /v1/datasets/{name}/versions; needs a token with the member role)."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def register(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Register the next version; the same content again resolves to the version that already has it.

        Raises RegistryError when the registry cannot register it (down, refused the token, rejected the body)."""
        try:
            out = self.client.create_dataset_version(name, body)
        except RegistryError as exc:
            if exc.code == "unknown_run" and body.get("producer_run_id"):
                # Our MLflow is not the registry's: keep the run id in the description, not as a link.
                return self.register(name, {**body, "producer_run_id": None})
            existing = exc.error.get("existing_version") if exc.code == "duplicate_dataset" else None
            if existing is None:
                raise
            out = self.client.dataset_version(name, int(existing))
            return {"name": name, "version": out["version"], "digest": out["digest"], "created": False}
        return {"name": out["name"], "version": out["version"], "digest": out["digest"], "created": True}
