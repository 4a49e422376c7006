"""React to alias moves in the registry: load and warm the new version, then swap it in."""

from __future__ import annotations

import logging

from services.inference.deployments import DeploymentManager, ModelDeployment
from services.inference.loader import load_deployment
from services.inference.metrics import InferenceMetrics
from services.inference.registry_source import VersionSpec
from services.inference.settings import InferenceSettings

log = logging.getLogger("inference.watcher")


class AliasWatcher:
    """Called by the registry poll loop; keeps serving the old version until the new one is warm."""

    def __init__(self, settings: InferenceSettings, manager: DeploymentManager, metrics: InferenceMetrics) -> None:
        self.settings = settings
        self.manager = manager
        self.metrics = metrics

    def current(self, alias: str) -> str | None:
        """The registry version loaded for an alias (None when none is)."""
        dep = self.manager.production if alias == self.settings.registry_alias else self.manager.canary
        # A model loaded from the settings (registry down at start) is no registry version: the first
        # successful poll replaces it with what the alias names.
        return dep.version if dep is not None and dep.artifact_uri is not None else None

    async def _deployment(self, spec: VersionSpec, alias: str) -> ModelDeployment:
        # Promoting the challenger's version (or naming production's version as challenger) reuses the loaded
        # engine: no second copy in memory, no load competing with traffic for the CPU, an instant swap.
        loaded = self.manager.find(spec.version, spec.artifact_uri)
        return loaded if loaded is not None else await load_deployment(self.settings, spec, alias)

    async def on_change(self, alias: str, spec: VersionSpec | None) -> None:
        """Load `spec` for `alias` and swap it in (production) or set it as the canary."""
        before = {d.version for d in self.manager.deployments()}
        if alias == self.settings.registry_alias:
            if spec is None:
                log.warning("production alias removed in the registry; keeping the loaded version")
                return
            self.manager.swap_production(await self._deployment(spec, alias))
            self.metrics.swaps.inc()
        else:
            canary = await self._deployment(spec, alias) if spec else None
            self.manager.set_canary(canary, self.settings.canary_percent)
        self._mark_ready(before)

    def _mark_ready(self, before: set[str]) -> None:
        """model_ready is 1 for the versions that take new requests, 0 for the ones just replaced."""
        model = self.settings.served_model_name
        serving = {d.version for d in self.manager.deployments()}
        for version in before - serving:
            self.metrics.model_ready.labels(model, version).set(0)
        for version in serving:
            self.metrics.model_ready.labels(model, version).set(1)
