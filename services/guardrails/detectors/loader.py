"""Load every detector once per process: the static table, the injection model (from the registry when one is
configured), the name model."""

from __future__ import annotations

import logging
import time
from typing import Any

from services.guardrails.detectors.content import (
    DenyListDetector,
    LengthDetector,
    TopicDetector,
    secrets_detector,
)
from services.guardrails.detectors.embeddings import (
    StaticEmbedder,
    StaticTable,
    load_tokenizer,
    packaged_model_path,
)
from services.guardrails.detectors.features import FeatureExtractor
from services.guardrails.detectors.injection import InjectionDetector
from services.guardrails.detectors.injection_model import InjectionModel
from services.guardrails.detectors.model_source import HttpRegistryClient, ModelWatcher, resolve_model
from services.guardrails.detectors.ner import PiiDetector, load_ner
from services.guardrails.detectors.output import (
    CanaryDetector,
    GroundednessDetector,
    JsonSchemaDetector,
    StaticSentenceEncoder,
)
from services.guardrails.settings import GuardrailsSettings

log = logging.getLogger("llmops.guardrails")
STATIC_TABLE = "static_minilm_pca128.npz"
STATIC_WINDOW, STATIC_STRIDE = 256, 128  # token windows of the topic and length detectors


def _injection_detector(settings: GuardrailsSettings, embedder: StaticEmbedder) -> InjectionDetector:
    """The injection detector with the registry's production model (watched), else the packaged one."""
    client = HttpRegistryClient(settings.registry_url, settings.registry_token) if settings.registry_url else None
    name, alias = settings.registry_model, settings.registry_alias
    model = resolve_model(client, lambda: InjectionModel.load(settings.artifacts_dir), name, alias)
    detector = InjectionDetector(model, FeatureExtractor(embedder, model.hash_bits))
    log.info("injection model loaded", extra={"version": model.version, "registry": settings.registry_url})
    if client is not None:
        # Keep polling even when the start fell back to the package: the registry may come back.
        detector.watcher = ModelWatcher(
            client, name, alias, model.version, detector.swap, settings.registry_poll_s
        ).start()
    return detector


def load_detectors(settings: GuardrailsSettings) -> dict[str, dict[str, Any]]:
    """Detectors by direction and name, ready to run."""
    started = time.perf_counter()
    model_dir = settings.model_dir or packaged_model_path()
    table = StaticTable.load(settings.artifacts_dir / STATIC_TABLE).dense()
    embedder = StaticEmbedder(load_tokenizer(model_dir), table, STATIC_WINDOW, STATIC_STRIDE)
    injection = _injection_detector(settings, embedder)
    common: dict[str, Any] = {
        "length": LengthDetector(embedder),
        "secrets": secrets_detector(),
        "pii": PiiDetector(load_ner()),  # structured identifiers, and names/places/organisations (spaCy)
        "denylist": DenyListDetector(),
        "topics": TopicDetector(embedder),
    }
    inputs = {**common, "injection": injection}
    outputs = {**common, "canary": CanaryDetector(), "json_schema": JsonSchemaDetector()}
    # Static token vectors, not the transformer: 268 ms per answer was over the check's own budget (issue 13).
    outputs["groundedness"] = GroundednessDetector(StaticSentenceEncoder(embedder))
    log.info("detectors loaded", extra={"seconds": round(time.perf_counter() - started, 2)})
    return {"input": inputs, "output": outputs}
