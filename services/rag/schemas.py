"""Request bodies of the RAG API, validated so bad input gets a clear 400."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Strategy = Literal["dense", "sparse", "hybrid"]
_ALL_STRATEGIES: tuple[Strategy, ...] = ("dense", "sparse", "hybrid")
Filters = dict[str, str | int | float | bool | list[str | int | float | bool]]


class CollectionCreate(BaseModel):
    """POST /v1/collections."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Lower-case letters, digits, '-' and '_'.")
    description: str = Field("", max_length=1000)
    abstain_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="This collection's abstention threshold (default: RAG_ABSTAIN_THRESHOLD). The evidence of a broad "
        "corpus is higher for off-topic questions too: calibrate it with bench/rag_trust.py on your own questions.",
    )


class DocumentIn(BaseModel):
    """One document in a JSON ingest (text, Markdown or HTML; PDFs go through the upload route)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=256, description="Stable id; default: content hash.")
    title: str | None = Field(None, max_length=500)
    text: str = Field(description="The document's content.")
    content_type: str = Field("text/plain", description="text/plain, text/markdown or text/html.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Filterable fields (scalars or lists).")


class IngestRequest(BaseModel):
    """POST /v1/collections/{name}/documents."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)
    redact_pii: bool = Field(False, description="Redact PII through the guardrails service when it is available.")
    wait: bool = Field(False, description="Answer when done (small ingests only) instead of returning a job.")


class SearchOptions(BaseModel):
    """Retrieval knobs shared by query and answer."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "hybrid"
    top_k: int | None = Field(None, ge=1, le=100)
    filters: Filters | None = Field(None, description="Equality or any-of conditions on metadata and doc_id/title.")
    score_threshold: float | None = Field(None, ge=-1, le=1, description="Minimum cosine relevance of a passage.")
    mmr: bool = Field(
        False,
        description="Re-rank the strategy's top candidates for diversity (maximal marginal relevance); the "
        "relevance term is the strategy's own score (the fused RRF score for hybrid).",
    )
    mmr_diversity: float = Field(0.5, ge=0, le=1, description="0: relevance only; 1: diversity only.")
    group_by: Literal["chunk", "document"] = Field(
        "chunk",
        description="What top_k counts: `chunk` (default: the best chunks, several may come from one document) or "
        "`document` (distinct documents, each represented by its best chunk).",
    )


class QueryRequest(SearchOptions):
    """POST /v1/collections/{name}/query."""

    query: str = Field(min_length=1, max_length=4000)


class AnswerRequest(SearchOptions):
    """POST /v1/collections/{name}/answer."""

    question: str = Field(min_length=1, max_length=4000)
    stream: bool = False
    abstain: bool | None = Field(
        None,
        description="Abstain without calling the model when the retrieval's evidence is too weak (calibrated); "
        "default: the service's setting (on).",
    )


class EvalQuestion(BaseModel):
    """One evaluation question with its gold ids."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    question: str = Field(min_length=1, max_length=4000)
    gold_doc_ids: list[str] = Field(default_factory=list)
    gold_chunk_ids: list[str] = Field(default_factory=list)
    reference_answer: str | None = None


class EvalRequest(BaseModel):
    """POST /v1/collections/{name}/eval."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("adhoc", max_length=200, description="Dataset name (logged with the run).")
    questions: list[EvalQuestion] = Field(min_length=1)
    strategies: list[Strategy] = Field(default_factory=lambda: list(_ALL_STRATEGIES), min_length=1)
    k: list[int] = Field(default_factory=lambda: [1, 3, 5, 10], min_length=1)
    answers: bool = Field(False, description="Also generate answers and score faithfulness and relevance.")
    judge: bool = Field(True, description="Use the LLM judge for faithfulness (when answers=true).")
    answer_strategy: Strategy = "hybrid"
    top_k: int = Field(5, ge=1, le=20)
