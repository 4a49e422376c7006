"""Build, load and warm an engine for a model version (from settings, or from a registry version)."""

from __future__ import annotations

import logging
from pathlib import Path

from services.inference.deployments import ModelDeployment
from services.inference.engines.base import Engine
from services.inference.engines.llamacpp import LlamaCppEngine, packaged_smollm2_path
from services.inference.engines.llamacpp_process import LlamaCppProcessEngine
from services.inference.engines.openai_upstream import OpenAIUpstreamEngine
from services.inference.registry_source import VersionSpec, resolve_artifact
from services.inference.settings import InferenceSettings

log = logging.getLogger("inference.loader")


def build_engine(settings: InferenceSettings, spec: VersionSpec | None = None) -> Engine:
    """The engine for a registry version when given, else the one the settings describe."""
    engine = spec.engine if spec else settings.engine
    args = spec.engine_args if spec else {}
    if engine in ("openai", "vllm"):
        if not settings.upstream_url:
            raise ValueError("INFERENCE_UPSTREAM_URL is required for the openai/vLLM engine")
        return OpenAIUpstreamEngine(
            settings.upstream_url,
            upstream_model=str(args.get("served_model_name") or settings.upstream_model or settings.served_model_name),
            api_key=settings.upstream_api_key,
            context_length=spec.context_length if spec else settings.context_length,
            timeout_s=settings.upstream_timeout_s,
        )
    if spec is not None:
        model_path = resolve_artifact(spec.artifact_uri)
    else:
        model_path = Path(settings.model_path) if settings.model_path else packaged_smollm2_path()
    context_length = int(args.get("n_ctx") or (spec.context_length if spec else settings.context_length))
    parallel_slots = int(args.get("parallel_slots") or settings.parallel_slots)
    # A fixed port only for the one model from the settings: versions loaded side by side in a swap need two.
    http_port = settings.engine_http_port if spec is None or settings.registry_url is None else 0
    if settings.engine_isolation == "in_process":
        return LlamaCppEngine(
            model_path,
            context_length=context_length,
            parallel_slots=parallel_slots,
            threads=settings.threads,
            http_port=http_port,
        )
    return LlamaCppProcessEngine(
        model_path,
        context_length=context_length,
        parallel_slots=parallel_slots,
        threads=settings.threads,
        http_port=http_port,
        start_timeout_s=settings.engine_start_timeout_s,
        request_timeout_s=settings.upstream_timeout_s,
        load_nice=settings.engine_load_nice,
        restart_after_s=settings.engine_restart_s,
    )


async def load_deployment(settings: InferenceSettings, spec: VersionSpec | None, alias: str) -> ModelDeployment:
    """Start the engine and warm it with a one-token generation, so its first real request is not slow."""
    engine = build_engine(settings, spec)
    await engine.start()
    if engine.is_ready():
        await engine.generate("chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
    # A llama.cpp child loads and warms at low CPU priority (the serving version keeps the cores during a swap);
    # it gets normal priority back before it takes traffic. Other engines have nothing to restore.
    restore_priority = getattr(engine, "restore_priority", None)
    if restore_priority is not None:
        restore_priority()
    version = spec.version if spec else settings.model_version
    log.info("version loaded and warm", extra={"version": version, "alias": alias, "engine": engine.name})
    return ModelDeployment(engine, version, alias, artifact_uri=spec.artifact_uri if spec else None)
