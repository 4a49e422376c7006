"""App factory of the RAG service: `uvicorn services.rag.app:create_app --factory --port 8002`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from llmops_common.app import build_service_app
from llmops_common.body_limit import BodySizeLimitMiddleware
from llmops_common.registry_client import AsyncRegistryClient, RegistryClient
from llmops_common.service_auth import install_service_auth, require_tokens
from services.rag.answer import AnswerService
from services.rag.attribution import Attributor
from services.rag.catalog import Catalog
from services.rag.content_check import ContentGuard
from services.rag.embedder import Embedder, available_cpus
from services.rag.evaluation import Evaluator
from services.rag.events import RagEvents
from services.rag.extract import ParseLimits
from services.rag.gateway import GatewayClient
from services.rag.ingest import IngestionPipeline
from services.rag.lineage import IngestRecorder
from services.rag.metrics import RagMetrics
from services.rag.prompts import PromptSource, StaticPrompt, load_default
from services.rag.redaction import GuardrailsRedactor
from services.rag.registry import DatasetRegistrar, RegistryPrompts
from services.rag.retrieval import Retriever
from services.rag.routes import router
from services.rag.service import RagService
from services.rag.settings import RagSettings
from services.rag.sparse import BM25Encoder
from services.rag.store import StoreUnavailable, VectorStore
from services.rag.tracking import build_run_logger

VERSION = "0.1.0"
log = logging.getLogger("rag.app")
# RAG's internal routes: nobody calls them with a gateway key (operators and platform services do), so they
# take RAG_SERVICE_TOKEN. Every other /v1 route is a user route and takes the caller's gateway key.
INTERNAL_PREFIXES = ("/v1/prompts/",)


def open_store(settings: RagSettings) -> VectorStore:
    """Qdrant server when a URL is set, else local mode under the data dir (one code path after this)."""
    return VectorStore(
        settings.qdrant_url,
        settings.resolved_data_dir() / "qdrant",
        api_key=settings.qdrant_api_key,
        timeout_s=settings.qdrant_timeout_s,
    )


def build_embedder(settings: RagSettings) -> Embedder:
    """The embedding model with the settings' batch size, threads and backend (ONNX exports under data_dir/models)."""
    return Embedder(
        settings.embedding_batch_size,
        settings.torch_threads,
        settings.embedding_backend,
        settings.resolved_data_dir() / "models",
        workers=settings.embedding_workers or min(4, available_cpus()),
        quantized=settings.embedding_quantized,
    )


def build_pipeline(settings: RagSettings, embedder: Embedder, catalog: Catalog) -> IngestionPipeline:
    """The ingestion pipeline with the settings' chunking and validation limits."""
    return IngestionPipeline(
        embedder,
        BM25Encoder(),
        catalog,
        chunk_size=settings.chunk_size,
        chunk_overlap=settings.chunk_overlap,
        min_chars=settings.min_doc_chars,
        max_chars=settings.max_doc_chars,
        redactor=(
            GuardrailsRedactor(settings.guardrails_url, token=settings.guardrails_token)
            if settings.guardrails_url
            else None
        ),
        group_chunks=settings.ingest_group_chunks,
        step_target_s=settings.ingest_step_target_s,
        dedup=settings.dedup,
        parse_limits=ParseLimits(
            max_pages=settings.pdf_max_pages,
            max_decompressed_bytes=settings.parse_max_decompressed_bytes,
            max_cpu_s=settings.parse_max_cpu_s,
            max_chars=settings.max_doc_chars,
        ),
    )


def build_guard(settings: RagSettings) -> ContentGuard | None:
    """The content check of retrieved chunks (guardrails' content mode), when guardrails is configured."""
    if not (settings.guardrails_url and settings.content_check):
        return None
    return ContentGuard(
        settings.guardrails_url, settings.guardrails_token, settings.guardrails_timeout_s, settings.guardrails_fail_mode
    )


def build_recorder(settings: RagSettings, catalog: Catalog, registry: RegistryClient | None = None) -> IngestRecorder:
    """Ingestion runs to MLflow (when configured) and to the registry as dataset versions (when configured)."""
    if registry is None and settings.registry_url:
        registry = RegistryClient(settings.registry_url, settings.registry_token, timeout_s=settings.registry_timeout_s)
    registrar = DatasetRegistrar(registry) if registry is not None else None
    return IngestRecorder(
        catalog,
        build_run_logger(settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_auth()),
        registrar,
        qdrant_url=settings.qdrant_url,
        qdrant_path=settings.resolved_data_dir() / "qdrant",
    )


async def open_prompts(settings: RagSettings, client: AsyncRegistryClient | None = None) -> PromptSource:
    """The registry's answer prompt at its alias (polled) when a registry is set (or `client` given), else the
    shipped v2."""
    shipped = load_default("rag-answer", version="2")
    if client is None and settings.registry_url:
        client = AsyncRegistryClient(
            settings.registry_url, settings.registry_token, timeout_s=settings.registry_timeout_s
        )
    if client is None:
        return StaticPrompt(shipped)
    prompts = RegistryPrompts(
        client, settings.registry_prompt, settings.registry_prompt_alias, shipped, refresh_s=settings.registry_refresh_s
    )
    await prompts.start()
    return prompts


def create_app(settings: RagSettings | None = None, embedder: Embedder | None = None) -> FastAPI:
    """Build the app; the model and Qdrant open in the lifespan and /readyz turns 200 when they have."""
    settings = settings or RagSettings()
    service_tokens = require_tokens(
        (settings.service_token or "").split(","),
        service="rag",
        setting="RAG_SERVICE_TOKEN",
        dev_mode=settings.dev_mode,
    )
    registry = CollectorRegistry()
    metrics = RagMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = embedder if embedder is not None else await asyncio.to_thread(build_embedder, settings)
        store = open_store(settings)
        try:
            await asyncio.to_thread(store.ensure_catalog)
        except StoreUnavailable as exc:  # start anyway: /readyz says not ready, requests get a clear 503
            log.warning("Qdrant unavailable at start", extra={"error": str(exc)})
        gateway = GatewayClient(
            settings.gateway_url,
            settings.llm_timeout_s,
            settings.me_cache_ttl_s,
            keys_redis_url=settings.gateway_redis_url or settings.events_redis_url,
            keys_prefix=settings.gateway_redis_prefix,
        )
        await gateway.start()
        catalog = Catalog(store, settings.public_team)
        encoder = BM25Encoder()
        retriever = Retriever(model, encoder, store, settings.rrf_k)
        prompts = await open_prompts(settings)
        guard = build_guard(settings)
        answers = AnswerService(
            gateway,
            prompts,
            metrics,
            model=settings.llm_model,
            max_tokens=settings.llm_max_tokens,
            max_context_chars=settings.max_context_chars,
            attributor=(
                Attributor(model, settings.attribution_threshold, settings.attribution_weight)
                if settings.attribution
                else None
            ),
            # Passages went through guardrails' content mode: mark them so the gateway judges them as what the
            # model reads, not as what the user says (it trusts the mark only with the guardrails token).
            context_token=settings.guardrails_token if guard is not None else None,
        )
        evaluator = Evaluator(
            retriever, answers, gateway, load_default("rag-judge"), settings.judge_model or settings.llm_model
        )
        app.state.store = store
        app.state.gateway = gateway
        app.state.rag = RagService(
            settings,
            catalog,
            build_pipeline(settings, model, catalog),
            retriever,
            answers,
            evaluator,
            metrics,
            build_run_logger(settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.mlflow_auth()),
            build_recorder(settings, catalog),
            guard,
        )
        app.state.events = None
        if settings.events_redis_url:
            app.state.events = RagEvents(
                settings.events_redis_url,
                settings.events_stream,
                emitted=metrics.events_emitted,
                dropped=metrics.events_dropped,
            )
            await app.state.events.start()
        try:
            yield
        finally:
            if app.state.events is not None:
                await app.state.events.aclose()
            await asyncio.to_thread(app.state.rag.jobs.shutdown)
            await gateway.aclose()
            if guard is not None:
                await guard.aclose()
            if isinstance(prompts, RegistryPrompts):
                await prompts.aclose()
            store.close()

    async def readiness() -> dict[str, bool]:
        store: VectorStore | None = getattr(app.state, "store", None)
        return {
            "embedder_loaded": getattr(app.state, "rag", None) is not None,
            "qdrant": bool(store) and await asyncio.to_thread(store.ping),  # type: ignore[union-attr]
        }

    app = build_service_app(
        name="rag",
        version=VERSION,
        description="Ingestion, hybrid retrieval over Qdrant, cited answers through the gateway, and evaluation.",
        settings=settings,
        registry=registry,
        readiness=readiness,
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_service_auth(app, service_tokens, service="rag", protected_prefixes=INTERNAL_PREFIXES)
    app.state.settings = settings
    app.include_router(router)
    return app
