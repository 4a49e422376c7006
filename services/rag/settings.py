"""Settings of the RAG service (env prefix RAG_; QDRANT_URL is honoured too)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from llmops_common.settings import ServiceSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


class RagSettings(ServiceSettings):
    """Where data lives, which models embed and answer, and the limits of ingestion and retrieval."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", populate_by_name=True)

    port: int = Field(8002, description="TCP port to listen on.")
    data_dir: str = Field(".llmops/data/rag", description="Data folder (relative paths are taken from the repo root).")
    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAG_QDRANT_URL", "QDRANT_URL", "qdrant_url"),
        description="Qdrant server URL; empty = qdrant-client local mode on disk under data_dir/qdrant.",
    )
    qdrant_api_key: str | None = Field(None, description="API key of the Qdrant server, if it needs one.")
    qdrant_timeout_s: float = Field(5.0, gt=0, description="Timeout of one Qdrant server call.")
    gateway_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL of the gateway (for /v1/me and the LLM call)."
    )
    llm_model: str = Field("smollm2-135m-instruct", description="Model the answers are generated with.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Total timeout of one LLM call through the gateway.")
    llm_max_tokens: int = Field(256, ge=1, description="max_tokens of an answer.")
    judge_model: str | None = Field(None, description="Model of the LLM judge in evals; default: llm_model.")
    me_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long a key's /v1/me answer is cached at most; kept only while subscribed to the gateway's "
        "key-change feed, which drops an answer the moment its key changes (revocation takes effect in ms).",
    )
    gateway_redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAG_GATEWAY_REDIS_URL", "GATEWAY_REDIS_URL", "gateway_redis_url"),
        description="The gateway's Redis, for its key-change feed (RAG_GATEWAY_REDIS_URL, else GATEWAY_REDIS_URL, "
        "else events_redis_url); none: no /v1/me caching.",
    )
    gateway_redis_prefix: str = Field(
        "llmops:gw",
        validation_alias=AliasChoices("RAG_GATEWAY_REDIS_PREFIX", "GATEWAY_REDIS_PREFIX", "gateway_redis_prefix"),
        description="The gateway's Redis key prefix (its GATEWAY_REDIS_PREFIX): the feed is <prefix>:keys:changed.",
    )
    public_team: str = Field(
        "public",
        description="Team whose collections every team may read (the demo corpus); writable only via the CLI.",
    )
    registry_url: str = Field(
        "",
        description="Registry service URL: the answer prompt comes from it and ingestion runs are registered "
        "there as dataset versions; empty = the shipped prompt, and ingestion runs in MLflow only.",
    )
    registry_token: str | None = Field(
        None,
        description="Bearer token of a registry principal with the member role (registering dataset versions "
        "needs it; reading the prompt needs none unless the registry refuses anonymous reads).",
    )
    registry_prompt: str = Field("rag-answer", description="Registry prompt the answers use.")
    registry_prompt_alias: str = Field("production", description="Alias of that prompt the answers follow.")
    registry_refresh_s: float = Field(
        30.0, gt=0, description="Seconds between checks of the prompt alias (a promotion is used within this)."
    )
    registry_timeout_s: float = Field(5.0, gt=0, description="Timeout of one registry call.")
    guardrails_url: str = Field(
        "",
        description="Guardrails service URL: retrieved chunks are checked there (content mode) before they go into "
        "an answer's prompt, and PII is redacted at ingestion when asked; unused when empty.",
    )
    guardrails_token: str | None = Field(
        None,
        description="Service token sent to the guardrails service as `Authorization: Bearer` (its "
        "GUARDRAILS_SERVICE_TOKEN).",
    )
    content_check: bool = Field(
        True, description="Check retrieved chunks through guardrails' content mode (when guardrails_url is set)."
    )
    guardrails_fail_mode: Literal["open", "closed"] = Field(
        "open",
        description="What answers do when guardrails cannot check the chunks and the team's policy has not said "
        "yet (a policy's fail_mode, seen in an earlier check, wins): open = answer unchecked and say so, "
        "closed = 503.",
    )
    guardrails_timeout_s: float = Field(3.0, gt=0, description="Timeout of one content check.")
    service_token: str | None = Field(
        None,
        description="Token(s), comma-separated for rotation, that RAG's internal routes (/v1/prompts/...) accept "
        "as `Authorization: Bearer`; required unless dev_mode is on. User routes take a gateway key instead.",
    )
    events_redis_url: str | None = Field(
        None, description="Redis of the trace-event stream; when set, every answer request emits an event."
    )
    events_stream: str = Field("llmops:events", description="Redis stream shared with the gateway's trace events.")
    mlflow_tracking_uri: str = Field(
        "", description="MLflow tracking server URL; ingestion and eval runs are logged there when set."
    )
    mlflow_experiment: str = Field("rag", description="MLflow experiment name for ingestion and eval runs.")
    mlflow_username: str = Field(
        "", description="MLflow user RAG logs runs as (basic auth; MLflow answers 401 without one). Empty: none."
    )
    mlflow_password: SecretStr | None = Field(None, description="That user's password (never logged).")
    torch_threads: int = Field(
        1,
        ge=1,
        description="CPU threads of the embedder. 1 by default: on shared or busy cores, 2+ threads wait on each "
        "other at every op (a query took ~0.5 s with 2 threads vs ~20 ms with 1 on a loaded 2-core box).",
    )
    embedding_backend: Literal["auto", "onnx"] = Field(
        "auto",
        description="Runtime of the embedding model: ONNX Runtime, the only one (auto = onnx). The graph is built once "
        "from the packaged weights under data_dir/models; PyTorch is not needed.",
    )
    embedding_batch_size: int = Field(64, ge=1, le=1024, description="Chunks embedded per model call.")
    embedding_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="ONNX Runtime sessions embedding batches side by side (each on RAG_TORCH_THREADS threads): "
        "ingestion uses the cores without the intra-op threads' waits on busy cores. 0 = one per available CPU, "
        "at most 4 (each float session holds ~90 MB).",
    )
    embedding_quantized: bool = Field(
        False,
        description="Embed with an int8 copy of the model (ONNX Runtime dynamic quantisation of the packaged weights, "
        "made once under data_dir/models): faster, slightly different vectors (cosine ~0.994 to the float ones; "
        "retrieval cost in bench/results/rag_embed_speed.md). Re-ingest after switching: stored vectors stay.",
    )
    chunk_size: int = Field(
        256, ge=16, le=512, description="Chunk size in word pieces; clamped to what the model reads (254)."
    )
    chunk_overlap: int = Field(32, ge=0, le=256, description="Tokens shared by consecutive chunks.")
    min_doc_chars: int = Field(20, ge=1, description="Documents shorter than this (after normalising) are refused.")
    max_doc_chars: int = Field(2_000_000, ge=100, description="Documents longer than this are refused.")
    max_body_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_sync_documents: int = Field(
        20, ge=1, description="Ingests up to this many documents may answer synchronously (wait=true)."
    )
    job_wait_max_s: float = Field(
        30.0, gt=0, description="Longest a wait=true ingest waits; then it answers 202 with the job to poll."
    )
    max_documents_per_job: int = Field(1000, ge=1, description="Most documents in one ingestion job (else 413).")
    max_jobs_per_team: int = Field(
        4, ge=1, description="Most ingestion jobs a team may have queued or running at once (else 429)."
    )
    max_upload_files: int = Field(50, ge=1, description="Most files in one upload (else 413).")
    max_upload_file_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest uploaded file (else 413).")
    ingest_workers: int = Field(
        1, ge=1, le=16, description="Threads stepping ingestion jobs (teams take turns step by step either way)."
    )
    ingest_group_chunks: int = Field(
        32,
        ge=1,
        le=4096,
        description="Most chunks embedded per step of a job (smaller: finer progress and turns); a step also ends "
        "after about RAG_INGEST_STEP_TARGET_S seconds of embedding.",
    )
    ingest_step_target_s: float = Field(
        1.5,
        gt=0,
        le=60,
        description="Seconds one embedding step of a job aims at: the step's chunk count follows the embedder's "
        "measured speed, so progress moves at least every 5 s on a slow machine too, and when it gets up to 3x slower "
        "from one step to the next.",
    )
    pdf_max_pages: int = Field(1000, ge=1, description="PDFs with more pages fail with `too_many_pages`.")
    parse_max_decompressed_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Bytes one PDF stream may decompress to (else `decompression_limit`)."
    )
    parse_max_cpu_s: float = Field(
        20.0, gt=0, description="CPU seconds to parse one document, checked between pages (else `parse_time_limit`)."
    )
    job_results_page: int = Field(
        50, ge=1, le=1000, description="Per-document results in a job view; the rest via /v1/jobs/{id}/results."
    )
    default_top_k: int = Field(5, ge=1, le=100, description="Passages retrieved when a request sets no top_k.")
    rrf_k: int = Field(
        60,
        ge=1,
        le=1000,
        description="Hybrid retrieval's reciprocal rank fusion constant: 1 / (rrf_k + rank) per list; smaller lets "
        "one list's top places weigh more (bench/rag_fusion.py measures it per corpus).",
    )
    default_score_threshold: float = Field(
        0.25, ge=-1, le=1, description="Minimum cosine relevance for a passage to count in an answer."
    )
    abstain: bool = Field(
        True,
        description="Abstain (no LLM call) when the retrieval evidence is below abstain_threshold (abstention.py).",
    )
    abstain_threshold: float = Field(
        0.36,
        ge=0,
        le=1,
        description="Answer when abstain_weight*top cosine + (1-abstain_weight)*lexical coverage reaches this; "
        "calibrated on bench/data/rag_dev by bench/rag_trust.py.",
    )
    abstain_weight: float = Field(0.6, ge=0, le=1, description="Weight of the top cosine in the abstention score.")
    attribution: bool = Field(True, description="Attribute answer sentences to passages and insert [n] markers.")
    attribution_threshold: float = Field(
        0.66,
        ge=0,
        le=1,
        description="A passage supports a sentence when attribution_weight*cosine + (1-weight)*lexical reaches "
        "this; calibrated on bench/data/rag_dev by bench/rag_trust.py.",
    )
    attribution_weight: float = Field(0.5, ge=0, le=1, description="Weight of the cosine in the support score.")
    dedup: Literal["skip", "link", "off"] = Field(
        "skip",
        description="A document whose normalised content is already indexed in the collection under another id: "
        "skip = not indexed (result `duplicate`, `duplicate_of`); link = also recorded as a document that points "
        "at the existing chunks; off = indexed again (dedup only inside one job).",
    )
    max_context_chars: int = Field(
        4000, ge=200, description="Most characters of retrieved passages put into one answer prompt."
    )
    max_eval_questions: int = Field(2000, ge=1, description="Largest eval dataset accepted.")
    max_answer_eval_questions: int = Field(50, ge=1, description="Most questions answered (LLM) in one eval.")

    def resolved_data_dir(self) -> Path:
        """The data folder as an absolute path."""
        path = Path(self.data_dir)
        return path if path.is_absolute() else REPO_ROOT / path

    def mlflow_auth(self) -> tuple[str, str] | None:
        """MLflow's basic-auth pair, when a user is configured."""
        if not self.mlflow_username:
            return None
        return self.mlflow_username, self.mlflow_password.get_secret_value() if self.mlflow_password else ""
