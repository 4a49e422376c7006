"""Resolve `<model>@<alias>` in the registry to a loadable version, and watch the alias for changes."""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_common.registry_client import AsyncRegistryClient, Poller, RegistryError

log = logging.getLogger("inference.registry")
_PYPI = re.compile(r"^pypi://(?P<dist>[A-Za-z0-9_.-]+)(==(?P<version>[^/]+))?/(?P<file>.+)$")


class ArtifactError(ValueError):
    """The registered artifact cannot be found on this machine."""


@dataclass(frozen=True)
class VersionSpec:
    """What the inference service needs to load one registered version."""

    name: str
    version: str
    artifact_uri: str
    engine: str
    context_length: int
    engine_args: dict[str, Any] = field(default_factory=dict)


def resolve_artifact(uri: str) -> Path:
    """A local path for the artifact: pypi://dist==ver/file (inside an installed wheel) or file:///path."""
    if match := _PYPI.match(uri):
        dist = importlib.metadata.distribution(match["dist"])
        if match["version"] and dist.version != match["version"]:
            raise ArtifactError(f"{uri}: installed {match['dist']} is {dist.version}, not {match['version']}")
        for entry in dist.files or ():
            if str(entry).endswith("/" + match["file"]) or str(entry) == match["file"]:
                return Path(str(dist.locate_file(entry)))
        raise ArtifactError(f"{uri}: {match['file']} is not inside the installed {match['dist']} package")
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if not path.is_file():
            raise ArtifactError(f"{uri}: no such file")
        return path
    raise ArtifactError(f"{uri}: only pypi:// and file:// artifacts can be loaded by the llama.cpp engine here")


class RegistrySource:
    """The model's aliases through the registry client (llmops_common), and a poll loop that reports changes.

    `resolve` raises RegistryError when the registry cannot answer (callers keep serving what is loaded)."""

    def __init__(self, client: AsyncRegistryClient, model: str) -> None:
        self.client = client
        self.model = model
        self._poller: Poller | None = None

    async def resolve(self, alias: str) -> VersionSpec | None:
        """The version an alias points at; None when the alias is not set (404)."""
        data = await self.client.model_alias(self.model, alias)
        if data is None:
            return None
        return VersionSpec(
            name=self.model,
            version=str(data["version"]),
            artifact_uri=data["artifact_uri"],
            engine=data.get("engine", "llamacpp"),
            context_length=int(data.get("context_length") or 2048),
            engine_args=data.get("engine_args") or {},
        )

    def watch(
        self,
        aliases: list[str],
        interval_s: float,
        on_change: Callable[[str, VersionSpec | None], Awaitable[None]],
        current: Callable[[str], str | None],
    ) -> None:
        """Poll the aliases; call `on_change(alias, spec)` when one points somewhere new."""

        async def poll() -> None:
            for alias in aliases:
                try:
                    spec = await self.resolve(alias)
                except (RegistryError, KeyError, ValueError, TypeError) as exc:
                    log.warning("registry poll failed; serving what is loaded", extra={"error": str(exc)})
                    continue
                if (spec.version if spec else None) != current(alias):
                    try:
                        await on_change(alias, spec)
                    except Exception:  # a bad new version must not kill the watcher or the old version
                        log.exception("loading the new version failed; keeping the old one", extra={"alias": alias})

        self._poller = Poller(poll, interval_s, "registry-watch")
        self._poller.start()

    async def stop(self) -> None:
        """Stop watching and close the client's connections."""
        if self._poller is not None:
            await self._poller.stop()
        await self.client.aclose()
