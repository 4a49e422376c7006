"""Loaded model versions and the swap between them: the current production deployment (plus an optional
canary), each counting its in-flight requests so an old version is stopped only after it has drained."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from services.inference.engines.base import Engine

log = logging.getLogger("inference.deployments")


@dataclass
class ModelDeployment:
    """One loaded version of the served model."""

    engine: Engine
    version: str
    alias: str = "production"
    # The registry artifact it was loaded from; None when it came from the settings (no registry, or the
    # registry was unreachable at start), so the watcher never mistakes it for a registered version.
    artifact_uri: str | None = None
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def acquire(self) -> None:
        """A request starts on this deployment."""
        self.inflight += 1
        self._idle.clear()

    def release(self) -> None:
        """A request finished on this deployment."""
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    def is_registered(self, version: str, artifact_uri: str) -> bool:
        """True when this deployment is that registry version (so it can be reused instead of loaded again)."""
        return self.artifact_uri is not None and (self.version, self.artifact_uri) == (version, artifact_uri)

    async def drain_and_stop(self, timeout_s: float) -> None:
        """Wait for in-flight requests (bounded), then unload."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("stopping a version with requests still running", extra={"version": self.version})
        await self.engine.stop()
        log.info("version unloaded", extra={"version": self.version})


class DeploymentManager:
    """Which deployment serves the next request; swaps are a single assignment, so none is dropped."""

    def __init__(
        self,
        production: ModelDeployment,
        drain_timeout_s: float = 120.0,
        random_source: Callable[[], float] | None = None,
    ) -> None:
        self.production = production
        self.canary: ModelDeployment | None = None
        self.canary_percent = 0.0
        self.drain_timeout_s = drain_timeout_s
        # Injected so tests can seed the split; a uniform draw in [0, 1) makes 0% and 100% exact.
        self._random = random_source or random.Random().random
        self._retiring: set[asyncio.Task[None]] = set()

    def pick(self) -> ModelDeployment:
        """Production, or the canary for `canary_percent` of requests."""
        if self.canary is not None and self._random() * 100 < self.canary_percent:
            return self.canary
        return self.production

    def deployments(self) -> list[ModelDeployment]:
        """Every loaded deployment (production and canary may be one object)."""
        if self.canary is None or self.canary is self.production:
            return [self.production]
        return [self.production, self.canary]

    def find(self, version: str, artifact_uri: str) -> ModelDeployment | None:
        """A loaded deployment of that registry version, if any (a promoted canary is reused, not reloaded)."""
        return next((d for d in self.deployments() if d.is_registered(version, artifact_uri)), None)

    async def wait_retired(self) -> None:
        """Wait until every replaced version has drained and unloaded (tests and benchmarks)."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring))

    def _retire(self, old: ModelDeployment) -> None:
        task = asyncio.create_task(old.drain_and_stop(self.drain_timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def swap_production(self, new: ModelDeployment) -> None:
        """New requests go to `new` from now on; the old version finishes what it started, then unloads."""
        old, self.production = self.production, new
        if old is new:
            return
        log.info("production swapped", extra={"from_version": old.version, "to_version": new.version})
        if old is not self.canary:
            self._retire(old)

    def set_canary(self, new: ModelDeployment | None, percent: float) -> None:
        """Route `percent` of traffic to `new` (None removes the canary)."""
        old, self.canary, self.canary_percent = self.canary, new, percent if new else 0.0
        if old is not None and old is not new and old is not self.production:
            self._retire(old)

    async def stop(self) -> None:
        """Unload everything (service shutdown)."""
        for dep in self.deployments():
            await dep.engine.stop()
        for task in list(self._retiring):
            await task
