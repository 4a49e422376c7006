"""The RAG service layer used by the routes: tenancy checks, jobs, retrieval, answers and evals; no HTTP here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from llmops_common.errors import APIError
from services.rag.abstention import Abstainer
from services.rag.answer import AnswerService
from services.rag.catalog import Catalog
from services.rag.content_check import ContentGuard, Screened
from services.rag.evaluation import Evaluator
from services.rag.gateway import Caller
from services.rag.ingest import CollectionDeleted, IngestionPipeline, RawDocument
from services.rag.jobs import Job, JobManager, TooManyJobs
from services.rag.lineage import IngestRecorder
from services.rag.metrics import RagMetrics
from services.rag.retrieval import Passage, RetrievalResult, Retriever
from services.rag.schemas import SearchOptions
from services.rag.settings import RagSettings
from services.rag.store import StoreUnavailable
from services.rag.tracking import RunLogger, flatten


def _public_view(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("kind", "qdrant_collection")}


class RagService:
    """Everything a request needs, wired once in the app's lifespan."""

    def __init__(
        self,
        settings: RagSettings,
        catalog: Catalog,
        pipeline: IngestionPipeline,
        retriever: Retriever,
        answers: AnswerService,
        evaluator: Evaluator,
        metrics: RagMetrics,
        run_logger: RunLogger,
        recorder: IngestRecorder,
        guard: ContentGuard | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pipeline = pipeline
        self.retriever = retriever
        self.answers = answers
        self.evaluator = evaluator
        self.metrics = metrics
        self.run_logger = run_logger
        self.recorder = recorder
        self.guard = guard
        self.abstainer = Abstainer(settings.abstain_threshold, settings.abstain_weight, settings.abstain)
        self.jobs = JobManager(
            pipeline.steps,
            recorder.record,
            self._job_finished,
            max_jobs_per_team=settings.max_jobs_per_team,
            workers=settings.ingest_workers,
            gone=self._collection_gone,
        )

    def _collection_gone(self, record: dict[str, Any]) -> bool:
        """Whether a job's collection was deleted (on the job's worker thread; Qdrant down is not 'gone')."""
        try:
            self.pipeline.check_collection(record)
        except CollectionDeleted:
            return True
        except StoreUnavailable:
            return False
        return False

    # ---- helpers -----------------------------------------------------------------------------
    async def _off_loop(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run blocking Qdrant/model work on a thread; Qdrant failures become a 503."""

        def call() -> Any:
            self.catalog.store.ensure_catalog()  # a no-op once done; Qdrant may have been down at start
            return fn(*args, **kwargs)

        try:
            return await asyncio.to_thread(call)
        except StoreUnavailable as exc:
            self.metrics.store_errors.inc()
            raise APIError(503, "vector_store_unavailable", str(exc), headers={"retry-after": "5"}) from exc

    async def collection(self, caller: Caller, name: str, write: bool = False) -> dict[str, Any]:
        """The caller's collection (or, for reads, a public one); 404 otherwise, whoever owns it."""
        record = await self._off_loop(self.catalog.get_collection, caller.team, name, not write)
        if record is None:
            raise APIError(404, "collection_not_found", f"collection '{name}' does not exist", param="name")
        return record

    # ---- collections -------------------------------------------------------------------------
    async def create_collection(
        self, caller: Caller, name: str, description: str, abstain_threshold: float | None = None
    ) -> dict[str, Any]:
        """Create a collection owned by the caller's team."""
        if await self._off_loop(self.catalog.get_collection, caller.team, name, False):
            raise APIError(409, "collection_exists", f"collection '{name}' already exists", param="name")
        record = await self._off_loop(
            self.catalog.create_collection, caller.team, name, description, self.pipeline.embedder.dimension
        )
        if abstain_threshold is not None:  # per collection: a broad corpus needs a higher one (bench/rag_trust.py)
            record["abstain_threshold"] = abstain_threshold
            await self._off_loop(self.catalog.save_collection, record)
        return _public_view(record)

    async def list_collections(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's collections and the public ones."""
        return [_public_view(r) for r in await self._off_loop(self.catalog.list_collections, caller.team)]

    async def delete_collection(self, caller: Caller, name: str) -> None:
        """Delete one of the caller's collections with all its documents."""
        record = await self.collection(caller, name, write=True)
        await self._off_loop(self.catalog.delete_collection, record)

    # ---- documents ---------------------------------------------------------------------------
    async def ingest(
        self,
        caller: Caller,
        name: str,
        docs: list[RawDocument],
        redact: bool,
        wait: bool,
        meter: Callable[[int], None] | None = None,
    ) -> tuple[Job, bool]:
        """Queue an ingestion job; with wait=true (small ingests) wait for it, at most job_wait_max_s. `meter`
        charges the caller's key for the tokens of each group before it is embedded (metering.job_meter).

        Returns the job and whether it has finished (a wait that timed out answers 202 with the job to poll)."""
        record = await self.collection(caller, name, write=True)
        limit = self.settings.max_documents_per_job
        if len(docs) > limit:
            raise APIError(
                413, "too_many_documents", f"{len(docs)} documents in one job; at most {limit} (split the ingest)"
            )
        if wait and len(docs) > self.settings.max_sync_documents:
            raise APIError(
                400,
                "too_many_for_wait",
                f"wait=true accepts at most {self.settings.max_sync_documents} documents; poll the job instead",
                param="wait",
            )
        try:
            job = self.jobs.submit(record, docs, redact, meter)
        except TooManyJobs:
            raise APIError(
                429,
                "too_many_jobs",
                f"your team already has {self.settings.max_jobs_per_team} ingestion jobs queued or running; "
                "wait for one to finish or cancel it (POST /v1/jobs/{id}/cancel)",
                headers={"retry-after": "5"},
            ) from None
        self.metrics.jobs_running.set(self.jobs.active())
        finished = False
        if wait:
            finished = await asyncio.to_thread(job.done.wait, self.settings.job_wait_max_s)
        return job, finished

    def _job_finished(self, job: Job) -> None:
        if job.error_code == "collection_deleted" and self.catalog.get_collection(job.team, job.collection) is None:
            # A write that raced the delete may have left document records behind: they belong to nothing now.
            for result in job.progress.results:
                if result["status"] == "indexed":
                    self.catalog.delete_document(job.team, job.collection, result["doc_id"])
        for result in job.progress.results:
            self.metrics.documents.labels(result["status"]).inc()
        self.metrics.chunks.inc(job.progress.chunks_done)
        self.metrics.jobs.labels(job.status).inc()
        self.metrics.jobs_running.set(self.jobs.active())

    async def ingest_run(self, caller: Caller, name: str, run_id: str) -> dict[str, Any]:
        """An ingestion run record of a collection the caller can read."""
        record = await self.collection(caller, name)
        run = await self._off_loop(self.catalog.get_run, run_id)
        if run is None or run.get("team") != record["team"] or run.get("collection") != name:
            raise APIError(404, "ingest_run_not_found", f"ingestion run '{run_id}' is not in '{name}'")
        return {k: v for k, v in run.items() if k != "kind"}

    def job(self, caller: Caller, job_id: str) -> Job:
        """A job of the caller's team."""
        job = self.jobs.get(job_id, caller.team)
        if job is None:
            raise APIError(404, "job_not_found", f"job '{job_id}' does not exist (jobs are kept in memory)")
        return job

    async def cancel_job(self, caller: Caller, job_id: str, wait_s: float = 10.0) -> tuple[Job, bool]:
        """Cancel a job of the caller's team; wait briefly for it to stop. Documents it indexed stay indexed."""
        job = self.job(caller, job_id)
        if not job.done.is_set():
            self.jobs.cancel(job)
        return job, await asyncio.to_thread(job.done.wait, wait_s)

    # ---- content check -----------------------------------------------------------------------
    async def screen(self, caller: Caller, passages: list[Passage]) -> Screened:
        """Retrieved passages through guardrails' content mode before they reach a prompt."""
        if self.guard is None:
            return Screened(list(passages), "off")
        return await self.guard.screen(caller, passages)

    async def list_documents(self, caller: Caller, name: str) -> list[dict[str, Any]]:
        """Documents of a collection with their status."""
        record = await self.collection(caller, name)
        docs = await self._off_loop(self.catalog.list_documents, record["team"], name)
        return [_public_view(d) for d in docs]

    async def get_document(self, caller: Caller, name: str, doc_id: str) -> dict[str, Any]:
        """One document record."""
        record = await self.collection(caller, name)
        doc = await self._off_loop(self.catalog.get_document, record["team"], name, doc_id)
        if doc is None:
            raise APIError(404, "document_not_found", f"document '{doc_id}' is not in '{name}'")
        return _public_view(doc)

    async def delete_document(self, caller: Caller, name: str, doc_id: str) -> None:
        """Delete a document and every chunk of it."""
        record = await self.collection(caller, name, write=True)
        if await self._off_loop(self.catalog.get_document, caller.team, name, doc_id) is None:
            raise APIError(404, "document_not_found", f"document '{doc_id}' is not in '{name}'")

        def _delete() -> None:
            self.catalog.store.delete_chunks(record["qdrant_collection"], doc_id)
            self.catalog.delete_document(caller.team, name, doc_id)
            self.catalog.refresh_stats(record)

        await self._off_loop(_delete)

    # ---- retrieval and answers ---------------------------------------------------------------
    async def retrieve(
        self, record: dict[str, Any], text: str, opts: SearchOptions, threshold: float | None
    ) -> RetrievalResult:
        """Retrieve with the request's options and record the latency."""
        result: RetrievalResult = await self._off_loop(
            self.retriever.retrieve,
            record["qdrant_collection"],
            text,
            strategy=opts.strategy,
            top_k=opts.top_k or self.settings.default_top_k,
            filters=opts.filters,
            score_threshold=threshold,
            mmr_diversity=opts.mmr_diversity if opts.mmr else None,
            group_by=opts.group_by,
        )
        self.metrics.retrieval.labels(opts.strategy).observe(result.latency_s)
        return result

    def eval_tokens(self, body: Any) -> int:
        """Tokens an eval embeds for its retrievals: every question once per strategy (and once more for answers)."""
        questions = [q.question for q in body.questions]
        tokens = self.pipeline.embedder.tokens_read(questions) * len(body.strategies)
        if body.answers:
            tokens += self.pipeline.embedder.tokens_read(questions[: self.settings.max_answer_eval_questions])
        return tokens

    def abstention(
        self,
        question: str,
        result: RetrievalResult,
        requested: bool | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any] | None:
        """The calibrated no-answer decision (None: answer); `requested` overrides the setting per request,
        `threshold` (the collection's own) the service's threshold."""
        abstainer = self.abstainer
        enabled = abstainer.enabled if requested is None else requested
        if enabled != abstainer.enabled or (threshold is not None and threshold != abstainer.threshold):
            abstainer = Abstainer(abstainer.threshold if threshold is None else threshold, abstainer.weight, enabled)
        # Counted with the not_found answers it becomes (llmops_rag_answers_total{outcome="not_found"}).
        return abstainer.decide(question, [p.relevance for p in result.passages], [p.text for p in result.passages])

    async def evaluate(self, caller: Caller, name: str, body: Any) -> dict[str, Any]:
        """Retrieval metrics per strategy (and answer quality when asked), logged as one run per strategy."""
        record = await self.collection(caller, name)
        questions = [q.model_dump() for q in body.questions]
        ks = sorted(set(body.k))
        started = time.time()
        report: dict[str, Any] = {
            "dataset": body.name,
            "collection": name,
            "data_version": record["data_version"],
            "questions": len(questions),
            "k": ks,
            "strategies": {},
        }
        for strategy in body.strategies:
            result = await self._off_loop(
                self.evaluator.retrieval, record["qdrant_collection"], questions, strategy, ks
            )
            report["strategies"][strategy] = result
        if body.answers:
            subset = questions[: self.settings.max_answer_eval_questions]
            report["answers"] = await self.evaluator.answer_quality(
                caller,
                record["qdrant_collection"],
                subset,
                body.answer_strategy,
                body.top_k,
                self.settings.default_score_threshold,
                body.judge,
                record["data_version"],
            )
        report["seconds"] = round(time.time() - started, 2)
        report["mlflow_run_ids"] = await asyncio.to_thread(self._log_eval, report, body)
        return report

    def _log_eval(self, report: dict[str, Any], body: Any) -> list[str | None]:
        ids = []
        for strategy, result in report["strategies"].items():
            params = {
                "dataset": report["dataset"],
                "collection": report["collection"],
                "strategy": strategy,
                "data_version": report["data_version"],
                "questions": report["questions"],
                **flatten("", self.pipeline.params()),
            }
            metrics = dict(result["metrics"])
            # Evidence tags (issue 12, row 12): the registry accepts this run for a model's approval gate only
            # when a platform evaluator wrote it and it names the model it evaluated. Retrieval runs evaluate the
            # embedding model; the answer run evaluates the LLM (and the prompt versions it answered with).
            tags = {
                "kind": "rag-eval",
                "collection": report["collection"],
                "llmops.evaluator": "rag",
                "llmops.evaluated_model": str(params.get("embedding_model", "")),
            }
            if "answers" in report and strategy == body.answer_strategy:
                metrics |= {f"answer.{k}": v for k, v in report["answers"]["metrics"].items()}
                # Answer quality depends on the prompt and the model too: log them to compare runs fairly.
                params["prompt_version"] = ",".join(report["answers"]["prompt_versions"]) or "none"
                params["llm_model"] = self.answers.model
                params["judge"] = body.judge
                tags["llmops.evaluated_model"] = self.answers.model
                tags["llmops.evaluated_prompt"] = params["prompt_version"]
            ids.append(self.run_logger.log_run(f"eval-{report['dataset']}-{strategy}", params, metrics, tags))
        return ids
