"""React to alias moves in the registry: load and warm the new version, then swap it in."""

from __future__ import annotations

import logging

from services.inference.deployments import DeploymentManager
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
        """The version loaded for an alias (None when none is)."""
        if alias == self.settings.registry_alias:
            return self.manager.production.version
        return self.manager.canary.version if self.manager.canary else None

    async def on_change(self, alias: str, spec: VersionSpec | None) -> None:
        """Load `spec` for `alias` and swap it in (production) or set it as the canary."""
        model = self.settings.served_model_name
        if alias == self.settings.registry_alias:
            if spec is None:
                log.warning("production alias removed in the registry; keeping the loaded version")
                return
            new = await load_deployment(self.settings, spec, alias)
            old = self.manager.production.version
            self.manager.swap_production(new)
            self.metrics.model_ready.labels(model, old).set(0)
            self.metrics.model_ready.labels(model, new.version).set(1)
            self.metrics.swaps.inc()
            return
        canary = await load_deployment(self.settings, spec, alias) if spec else None
        self.manager.set_canary(canary, self.settings.canary_percent)
        if canary is not None:
            self.metrics.model_ready.labels(model, canary.version).set(1)
