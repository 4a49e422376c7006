"""Build, load and warm an engine for a model version (from settings, or from a registry version)."""

from __future__ import annotations

import logging

from services.inference.deployments import ModelDeployment
from services.inference.engines.base import Engine
from services.inference.engines.registry import engine_factory
from services.inference.registry_source import VersionSpec
from services.inference.settings import InferenceSettings

log = logging.getLogger("inference.loader")


def build_engine(settings: InferenceSettings, spec: VersionSpec | None = None) -> Engine:
    """The engine for a registry version when given, else the one the settings describe (see engines/registry.py)."""
    return engine_factory(spec.engine if spec else settings.engine)(settings, spec)


async def load_deployment(settings: InferenceSettings, spec: VersionSpec | None, alias: str) -> ModelDeployment:
    """Start the engine and warm it with a one-token generation, so its first real request is not slow."""
    engine = build_engine(settings, spec)
    await engine.start()
    if engine.is_ready():
        await engine.generate("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    # A llama.cpp child loads and warms at low CPU priority (the serving version keeps the cores during a swap);
    # it gets normal priority back before it takes traffic. Other engines have nothing to restore.
    engine.restore_priority()
    version = spec.version if spec else settings.model_version
    log.info("version loaded and warm", extra={"version": version, "alias": alias, "engine": engine.name})
    return ModelDeployment(engine, version, alias, artifact_uri=spec.artifact_uri if spec else None)
