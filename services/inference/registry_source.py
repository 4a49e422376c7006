"""Resolve `<model>@<alias>` in the registry to a loadable version, and watch the alias for changes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

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
    """GET {registry}/v1/models/{name}/aliases/{alias}, and a poll loop that reports changes."""

    def __init__(self, base_url: str, model: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._task: asyncio.Task[None] | None = None

    async def resolve(self, alias: str) -> VersionSpec | None:
        """The version an alias points at; None when the alias is not set (404)."""
        async with (
            aiohttp.ClientSession(timeout=self.timeout) as session,
            session.get(f"{self.base_url}/v1/models/{self.model}/aliases/{alias}") as resp,
        ):
            if resp.status == 404:
                return None
            resp.raise_for_status()
            data = await resp.json()
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

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                for alias in aliases:
                    try:
                        spec = await self.resolve(alias)
                    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                        log.warning("registry poll failed; serving what is loaded", extra={"error": str(exc)})
                        continue
                    if (spec.version if spec else None) != current(alias):
                        try:
                            await on_change(alias, spec)
                        except Exception:  # a bad new version must not kill the watcher or the old version
                            log.exception("loading the new version failed; keeping the old one", extra={"alias": alias})

        self._task = asyncio.create_task(loop(), name="registry-watch")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
