"""Load every detector once per process: the static table, the injection model, the transformer."""

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
from services.guardrails.detectors.injection import InjectionDetector, InjectionModel
from services.guardrails.detectors.ner import PiiDetector, load_ner
from services.guardrails.detectors.output import (
    CanaryDetector,
    GroundednessDetector,
    JsonSchemaDetector,
    StaticSentenceEncoder,
)
from services.guardrails.settings import GuardrailsSettings

log = logging.getLogger("llmops.guardrails")


def load_detectors(settings: GuardrailsSettings) -> dict[str, dict[str, Any]]:
    """Detectors by direction and name, ready to run."""
    started = time.perf_counter()
    model_dir = settings.model_dir or packaged_model_path()
    model = InjectionModel.load(settings.artifacts_dir / "injection_lr.json")
    table = StaticTable.load(settings.artifacts_dir / model.metadata["embedding"]["static_table"]).dense()
    embedder = StaticEmbedder(load_tokenizer(model_dir), table, model.window, model.stride)
    common: dict[str, Any] = {
        "length": LengthDetector(embedder),
        "secrets": secrets_detector(),
        "pii": PiiDetector(load_ner()),  # structured identifiers, and names/places/organisations (spaCy)
        "denylist": DenyListDetector(),
        "topics": TopicDetector(embedder),
    }
    inputs = {**common, "injection": InjectionDetector(model, embedder)}
    outputs = {**common, "canary": CanaryDetector(), "json_schema": JsonSchemaDetector()}
    # Static token vectors, not the transformer: 268 ms per answer was over the check's own budget (issue 13).
    outputs["groundedness"] = GroundednessDetector(StaticSentenceEncoder(embedder))
    log.info("detectors loaded", extra={"seconds": round(time.perf_counter() - started, 2)})
    return {"input": inputs, "output": outputs}
