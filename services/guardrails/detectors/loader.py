"""DETECTORS, the one list of detectors (policy names, settings classes and the docs derive from it), and
loading each once per process: the static table, the injection model (from the registry when one is
configured), the name model.

Adding a detector is one file in this folder (a class implementing `base.Detector`, and its settings: a
`DetectorPolicy` subclass) and one line in DETECTORS; docs/extending.md walks through it.
"""

from __future__ import annotations

import functools
import logging
import time

from llmops_common.registry_client import RegistryClient
from services.guardrails.detector_config import (
    CanaryPolicy,
    DenylistPolicy,
    GroundednessPolicy,
    InjectionPolicy,
    JsonSchemaPolicy,
    LengthPolicy,
    PiiPolicy,
    SecretsPolicy,
    TopicsPolicy,
)
from services.guardrails.detectors.base import INPUT_AND_OUTPUT, INPUT_ONLY, OUTPUT_ONLY, Detector, DetectorSpec
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
from services.guardrails.detectors.model_source import ModelWatcher, resolve_model
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


class DetectorContext:
    """What detectors share, built on first use: the settings and the static token embedder."""

    def __init__(self, settings: GuardrailsSettings, registry: RegistryClient | None = None) -> None:
        self.settings = settings
        self._registry = registry

    def registry_client(self) -> RegistryClient | None:
        """The injected registry client, else one for GUARDRAILS_REGISTRY_URL when that is set."""
        if self._registry is None and self.settings.registry_url:
            self._registry = RegistryClient(self.settings.registry_url, self.settings.registry_token)
        return self._registry

    @functools.cached_property
    def embedder(self) -> StaticEmbedder:
        """MiniLM's tokenizer over the static token table (topics, length, injection features, groundedness)."""
        model_dir = self.settings.model_dir or packaged_model_path()
        table = StaticTable.load(self.settings.artifacts_dir / STATIC_TABLE).dense()
        return StaticEmbedder(load_tokenizer(model_dir), table, STATIC_WINDOW, STATIC_STRIDE)


def _injection_detector(ctx: DetectorContext) -> InjectionDetector:
    """The injection detector with the registry's production model (watched), else the packaged one."""
    settings, embedder = ctx.settings, ctx.embedder
    client = ctx.registry_client()
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


# Name -> settings, modes, factory; in run order (cheap and decisive first), whatever order a policy file uses.
DETECTORS: dict[str, DetectorSpec] = {
    "length": DetectorSpec(LengthPolicy, INPUT_AND_OUTPUT, lambda ctx: LengthDetector(ctx.embedder)),
    "injection": DetectorSpec(InjectionPolicy, INPUT_ONLY, _injection_detector),
    "canary": DetectorSpec(CanaryPolicy, OUTPUT_ONLY, lambda ctx: CanaryDetector()),
    "secrets": DetectorSpec(SecretsPolicy, INPUT_AND_OUTPUT, lambda ctx: secrets_detector()),
    # Structured identifiers, and names/places/organisations (spaCy).
    "pii": DetectorSpec(PiiPolicy, INPUT_AND_OUTPUT, lambda ctx: PiiDetector(load_ner())),
    "denylist": DetectorSpec(DenylistPolicy, INPUT_AND_OUTPUT, lambda ctx: DenyListDetector()),
    "json_schema": DetectorSpec(JsonSchemaPolicy, OUTPUT_ONLY, lambda ctx: JsonSchemaDetector()),
    # Static token vectors, not the transformer: 268 ms per answer was over the check's own budget (issue 13).
    "groundedness": DetectorSpec(
        GroundednessPolicy, OUTPUT_ONLY, lambda ctx: GroundednessDetector(StaticSentenceEncoder(ctx.embedder))
    ),
    "topics": DetectorSpec(TopicsPolicy, INPUT_AND_OUTPUT, lambda ctx: TopicDetector(ctx.embedder)),
}


def load_detectors(
    settings: GuardrailsSettings, registry: RegistryClient | None = None
) -> dict[str, dict[str, Detector]]:
    """Every registered detector, built once (a detector of both directions is one object), by direction.

    `registry` (tests pass one) is where the injection model is resolved; default: GUARDRAILS_REGISTRY_URL's."""
    started = time.perf_counter()
    ctx = DetectorContext(settings, registry)
    built = {name: spec.build(ctx) for name, spec in DETECTORS.items()}
    log.info("detectors loaded", extra={"seconds": round(time.perf_counter() - started, 2)})
    return {
        mode: {name: built[name] for name, spec in DETECTORS.items() if mode in spec.modes}
        for mode in ("input", "output")
    }
