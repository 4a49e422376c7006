"""The three extension registries (ENGINES, DETECTORS, METRICS) are the one list of their names: what settings,
policy files and the registry service accept derives from them or is held equal to them here."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.guardrails.detector_config import DetectorPolicy
from services.guardrails.detectors.loader import DETECTORS
from services.guardrails.policies import INPUT_DETECTORS, OUTPUT_DETECTORS, PolicyError, PolicySet
from services.inference.engines.base import Engine
from services.inference.engines.registry import ENGINES
from services.inference.loader import build_engine
from services.inference.registry_source import VersionSpec
from services.inference.settings import InferenceSettings
from services.rag.eval_metrics import ANSWER_METRICS, METRICS, RETRIEVAL_METRICS, score_retrieval
from services.registry.schemas import ModelVersionCreate

ENGINE_METHODS = ("start", "stop", "is_ready", "refresh_ready", "restore_priority", "generate", "stream")


def test_registry_service_accepts_exactly_the_registered_engines() -> None:
    """A model version may name an engine only when inference has it (it accepted `vllm` while inference did not)."""
    field = ModelVersionCreate.model_fields["engine"]
    assert set(typing.get_args(field.annotation)) == set(ENGINES)


def test_engine_protocol_lists_every_method_the_serving_code_calls() -> None:
    """No optional methods reached with getattr: the Protocol is complete."""
    for method in ENGINE_METHODS:
        assert callable(getattr(Engine, method, None)), method


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_engine_builds_an_object_with_the_whole_protocol(name: str, tmp_path: Path) -> None:
    """Each factory (not started: nothing loads) returns an engine with every Protocol method."""
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    settings = InferenceSettings(engine=name, upstream_url="http://127.0.0.1:9/v1", model_path=str(gguf))
    engine = build_engine(settings)
    for method in ENGINE_METHODS:
        assert callable(getattr(engine, method, None)), f"{name}: {method}"
    assert isinstance(engine.name, str) and engine.context_length > 0


def test_unknown_engine_fails_the_start_with_the_closest_name() -> None:
    """A typo in INFERENCE_ENGINE is refused, not served by llama.cpp."""
    with pytest.raises(ValidationError, match=r"unknown engine 'llamcpp' \(did you mean 'llamacpp'\?\)"):
        InferenceSettings(engine="llamcpp")


def test_registry_version_with_an_unknown_engine_is_refused_not_loaded_as_llamacpp() -> None:
    """Versions resolved from the registry go through the same lookup (they used to fall through to llama.cpp)."""
    spec = VersionSpec(name="m", version="1", artifact_uri="file:///x.gguf", engine="tgi", context_length=2048)
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        build_engine(InferenceSettings(), spec)


def test_policy_sections_accept_exactly_the_registered_detectors() -> None:
    """Names and settings classes per section come from DETECTORS, in its order."""
    assert list(INPUT_DETECTORS) == [n for n, d in DETECTORS.items() if "input" in d.modes]
    assert list(OUTPUT_DETECTORS) == [n for n, d in DETECTORS.items() if "output" in d.modes]
    for name, spec in DETECTORS.items():
        assert issubclass(spec.settings, DetectorPolicy), name
        assert spec.modes and spec.modes <= {"input", "output"}, name
    with pytest.raises(PolicyError, match=r"unknown output detector 'injection'"):
        PolicySet.from_dict({"policies": {"default": {"output": {"injection": {}}}}})


def test_metrics_registry_is_what_an_eval_reports() -> None:
    """Every registered retrieval metric appears in the scores (per k, or at its fixed cutoff), nothing else."""
    scores = score_retrieval(["a", "g"], {"g"}, [1, 2])
    expected = set()
    for name in RETRIEVAL_METRICS:
        expected |= {f"{name[:-2]}@{k}" for k in (1, 2)} if name.endswith("@k") else {name}
    assert set(scores) == expected
    assert set(METRICS) == set(RETRIEVAL_METRICS) | set(ANSWER_METRICS)
    assert all("@" in name for name in RETRIEVAL_METRICS) and not any("@" in name for name in ANSWER_METRICS)
