"""Thin HTTP routes: authenticate through the gateway, validate, call the service layer, map errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from llmops_common.errors import APIError, error_body
from llmops_common.openapi_errors import STREAMING_RESPONSES
from llmops_common.service_auth import bearer_token
from llmops_common.sse import DONE, sse_frame
from services.rag import metering
from services.rag.events import RagEvents
from services.rag.gateway import Caller, GatewayClient, GatewayRefused, GatewayUnavailable
from services.rag.ingest import RawDocument
from services.rag.jobs import Job
from services.rag.registry import RegistryPrompts
from services.rag.schemas import AnswerRequest, CollectionCreate, DocumentIn, EvalRequest, IngestRequest, QueryRequest
from services.rag.service import RagService

router = APIRouter(prefix="/v1", tags=["rag"])


def get_service(request: Request) -> RagService:
    """The app's service layer (set up in the lifespan)."""
    service: RagService | None = getattr(request.app.state, "rag", None)
    if service is None:
        raise APIError(503, "not_ready", "the service is still starting; retry shortly", headers={"retry-after": "2"})
    return service


async def get_caller(request: Request) -> Caller:
    """Authenticate the bearer key through the gateway's /v1/me; the team it returns scopes everything."""
    key = bearer_token(request.headers.get("authorization"))
    if key is None:
        raise APIError(401, "missing_api_key", "send your virtual key as 'Authorization: Bearer <key>'")
    gateway: GatewayClient = request.app.state.gateway
    try:
        caller = await gateway.whoami(key)
    except GatewayUnavailable as exc:
        raise APIError(503, "gateway_unavailable", f"cannot authenticate: {exc}", headers={"retry-after": "5"}) from exc
    if caller is None:
        raise APIError(401, "invalid_api_key", "the gateway does not accept this key")
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
ServiceDep = Annotated[RagService, Depends(get_service)]


def _metered(kind: str) -> Any:
    """A caller dependency that first counts the request against the caller's key at the gateway (requests per
    minute shared with chat, budget): retrieval and ingestion cost no LLM call, yet must not be free of limits.
    The tokens an ingestion embeds are charged group by group as the job runs (metering.job_meter)."""

    async def admitted(request: Request, caller: CallerDep) -> Caller:
        await metering.admit(request.app.state.gateway, caller, kind)
        return caller

    return Depends(admitted)


IngestCaller = Annotated[Caller, _metered("rag.ingest")]


def _job_meter(request: Request, caller: Caller) -> Callable[[int], None]:
    return metering.job_meter(request.app.state.gateway, caller, asyncio.get_running_loop())


# What _job_response answers besides the route's own status: documented, so a client is not surprised.
_FINISHED_JOB: dict[int | str, dict[str, Any]] = {200: {"description": "The finished job (`wait: true`, in time)."}}
_STILL_STOPPING: dict[int | str, dict[str, Any]] = {202: {"description": "The job is cancelled but still stopping."}}


def _job_response(rag: RagService, job: Job, finished: bool) -> JSONResponse:
    """200 with the finished job (wait=true that finished in time), else 202 with the job to poll."""
    return JSONResponse(job.view(rag.settings.job_results_page), status_code=200 if finished else 202)


def _refused(exc: GatewayRefused) -> APIError:
    """The gateway's refusal of RAG's LLM call, passed on with its status and code (and Retry-After)."""
    headers = {"retry-after": exc.retry_after} if exc.retry_after else None
    return APIError(exc.status, exc.code, f"the gateway refused the LLM call: {exc.message}", headers=headers)


@router.post("/collections", status_code=201)
async def create_collection(body: CollectionCreate, caller: CallerDep, rag: ServiceDep) -> dict[str, Any]:
    """Create a collection owned by the caller's team."""
    return await rag.create_collection(caller, body.name, body.description, body.abstain_threshold)


@router.get("/collections")
async def list_collections(caller: CallerDep, rag: ServiceDep) -> dict:
    """The caller's collections, then the public (demo) ones it may read."""
    return {"data": await rag.list_collections(caller)}


@router.get("/collections/{name}")
async def get_collection(name: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """One collection with its counts and data version."""
    record = await rag.collection(caller, name)
    return {k: v for k, v in record.items() if k not in ("kind", "qdrant_collection")}


@router.delete("/collections/{name}")
async def delete_collection(name: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """Delete a collection, its documents and chunks."""
    await rag.delete_collection(caller, name)
    return {"deleted": name}


@router.post("/collections/{name}/documents", status_code=202, responses=_FINISHED_JOB)
async def ingest_json(
    name: str, body: IngestRequest, caller: IngestCaller, rag: ServiceDep, request: Request
) -> JSONResponse:
    """Ingest text/Markdown/HTML documents sent as JSON; returns a job (or the finished job with wait=true)."""
    docs = [RawDocument(d.text, d.id, d.title, d.content_type, None, d.metadata) for d in body.documents]
    meter = _job_meter(request, caller)
    return _job_response(rag, *await rag.ingest(caller, name, docs, body.redact_pii, body.wait, meter))


@router.post("/collections/{name}/documents/upload", status_code=202, responses=_FINISHED_JOB)
async def ingest_upload(
    name: str,
    caller: IngestCaller,
    rag: ServiceDep,
    request: Request,
    files: Annotated[list[UploadFile], File(description="Text, Markdown, HTML or PDF files.")],
    redact_pii: Annotated[bool, Form()] = False,
    wait: Annotated[bool, Form()] = False,
) -> JSONResponse:
    """Ingest uploaded files (multipart); each file is one document, its name the document id."""
    settings = rag.settings
    if len(files) > settings.max_upload_files:
        raise APIError(413, "too_many_files", f"{len(files)} files in one upload; at most {settings.max_upload_files}")
    for f in files:
        if f.size is not None and f.size > settings.max_upload_file_bytes:
            raise APIError(
                413,
                "file_too_large",
                f"'{f.filename}' has {f.size} bytes; at most {settings.max_upload_file_bytes} per file",
            )
    docs = [RawDocument(await f.read(), f.filename, None, f.content_type, f.filename) for f in files]
    return _job_response(rag, *await rag.ingest(caller, name, docs, redact_pii, wait, _job_meter(request, caller)))


@router.post("/collections/{name}/documents/bulk", status_code=202)
async def ingest_jsonl(name: str, request: Request, caller: IngestCaller, rag: ServiceDep) -> JSONResponse:
    """Ingest JSONL (one document object per line, as in the JSON route); a bad line is a per-document error."""
    docs: list[RawDocument] = []
    for number, line in enumerate((await request.body()).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = DocumentIn.model_validate(orjson.loads(line))
            docs.append(RawDocument(d.text, d.id, d.title, d.content_type, None, d.metadata))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            docs.append(RawDocument("", f"line-{number}", invalid=("invalid_line", f"line {number}: {exc}"[:500])))
    if not docs:
        raise APIError(400, "empty_body", "the JSONL body has no documents")
    return _job_response(rag, *await rag.ingest(caller, name, docs, False, False, _job_meter(request, caller)))


@router.get("/collections/{name}/documents")
async def list_documents(name: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """Documents of a collection with their status, hash and chunk count."""
    return {"data": await rag.list_documents(caller, name)}


@router.get("/collections/{name}/documents/{doc_id:path}")
async def get_document(name: str, doc_id: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """One document record."""
    return await rag.get_document(caller, name, doc_id)


@router.delete("/collections/{name}/documents/{doc_id:path}")
async def delete_document(name: str, doc_id: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """Delete a document and all its chunks."""
    await rag.delete_document(caller, name, doc_id)
    return {"deleted": doc_id}


@router.get("/collections/{name}/ingest-runs/{run_id}")
async def get_ingest_run(name: str, run_id: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """One ingestion run: parameters (chunker, sizes, embedding model and version), counts, input hash."""
    return await rag.ingest_run(caller, name, run_id)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, caller: CallerDep, rag: ServiceDep) -> dict:
    """Progress of an ingestion job: counters, errors, and the first page of per-document results."""
    return rag.job(caller, job_id).view(rag.settings.job_results_page)


@router.get("/jobs/{job_id}/results")
async def get_job_results(
    job_id: str,
    caller: CallerDep,
    rag: ServiceDep,
    cursor: Annotated[int, Query(ge=0, description="Where to start (a previous page's next_cursor).")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """Per-document results of a job, a page at a time; `next_cursor` is null once the job has ended and all
    results were read (while it runs, poll the same cursor for results still to come)."""
    job = rag.job(caller, job_id)
    page, next_cursor = job.results_page(cursor, limit)
    return {"data": page, "next_cursor": next_cursor, "total": len(job.progress.results), "status": job.status}


@router.post("/jobs/{job_id}/cancel", responses=_STILL_STOPPING)
async def cancel_job(job_id: str, caller: CallerDep, rag: ServiceDep) -> JSONResponse:
    """Cancel a queued or running job: it ends as `cancelled`; documents indexed before the cancel stay indexed
    and are listed in its results (`run.counts.not_processed` says how many were not). 202 if still stopping."""
    job, finished = await rag.cancel_job(caller, job_id)
    return _job_response(rag, job, finished)


@router.post("/collections/{name}/query")
async def query(name: str, body: QueryRequest, caller: CallerDep, rag: ServiceDep, request: Request) -> dict:
    """Retrieve passages (dense, sparse or hybrid; filters, threshold, top-k, MMR) without generating. Counted
    against the caller's key first: one request, and the query's tokens the embedder reads (TPM, charged)."""
    tokens = rag.pipeline.embedder.tokens_read([body.query])
    await metering.admit(request.app.state.gateway, caller, "rag.query", tokens)
    record = await rag.collection(caller, name)
    result = await rag.retrieve(record, body.query, body, body.score_threshold)
    return {
        "collection": name,
        "strategy": body.strategy,
        "group_by": body.group_by,
        "data_version": record["data_version"],
        "passages": [p.as_dict() for p in result.passages],
        "below_threshold": result.below_threshold,
        "latency_ms": round(result.latency_s * 1000, 3),
    }


@router.post("/collections/{name}/answer", response_model=None, responses=STREAMING_RESPONSES)
async def answer(
    name: str, body: AnswerRequest, caller: CallerDep, rag: ServiceDep, request: Request
) -> dict | StreamingResponse:
    """Answer from the collection through the gateway, with numbered citations; `stream: true` answers in SSE."""
    started = time.perf_counter()
    events = getattr(request.app.state, "events", None)
    # The LLM call is metered as a chat request; the question's embedding is charged here (no extra request).
    await metering.admit(
        request.app.state.gateway, caller, "rag.embed", rag.pipeline.embedder.tokens_read([body.question])
    )
    threshold = body.score_threshold if body.score_threshold is not None else rag.settings.default_score_threshold
    try:
        record = await rag.collection(caller, name)
        result = await rag.retrieve(record, body.question, body, threshold)
    except APIError as exc:
        if exc.code != "vector_store_unavailable":
            raise
        # Qdrant cannot be searched: the documented degraded answer (200, `degraded`, no passages), not an error,
        # as when the LLM cannot be reached; /query, ingestion and collection routes answer 503 instead.
        out = rag.answers.store_unavailable(exc.message)
        if events is not None:
            events.record(caller, body.question, out, 200, started)
        if body.stream:
            return StreamingResponse(_sse(_one(out | {"type": "done"})), media_type="text/event-stream")
        return out
    # no evidence: no LLM call, no content check (the collection's own threshold when it has one)
    abstention = rag.abstention(body.question, result, body.abstain, record.get("abstain_threshold"))
    # indirect injection: chunks are what the model reads
    screened = await rag.screen(caller, result.passages) if abstention is None else None
    meta = screened.meta() if screened is not None else {"abstained": True, "abstention": abstention}
    if screened is None or not screened.passages:
        out = rag.answers.not_found([], record["data_version"], meta)
        if events is not None:
            events.record(caller, body.question, out, 200, started)
        if body.stream:
            return StreamingResponse(_sse(_one(out | {"type": "done"})), media_type="text/event-stream")
        return out
    try:
        if body.stream:
            stream = await rag.answers.stream(caller, body.question, screened.passages, record["data_version"], meta)
            if events is not None:
                stream = _recorded(stream, events, caller, body.question, started)
            return StreamingResponse(
                _sse(stream), media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        out = await rag.answers.answer(caller, body.question, screened.passages, record["data_version"], meta)
        if events is not None:
            events.record(caller, body.question, out, 200, started)
        return out
    except GatewayRefused as exc:
        rag.metrics.answers.labels("refused").inc()
        if events is not None:
            passages = [p.as_dict() for p in result.passages]
            refused = {"passages": passages, "error": {"code": exc.code}}
            events.record(caller, body.question, refused, exc.status, started)
        raise _refused(exc) from exc


async def _recorded(
    stream: AsyncIterator[dict[str, Any]], events: RagEvents, caller: Caller, question: str, started: float
) -> AsyncIterator[dict[str, Any]]:
    """Pass the answer's events through and record the trace event when the final one goes by."""
    async for event in stream:
        if event.get("type") == "done":
            events.record(caller, question, event, 200, started, stream=True)
        yield event


async def _one(event: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield event


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield sse_frame(event)
    except GatewayRefused as exc:
        yield sse_frame(error_body(exc.status, exc.code, exc.message))
    yield DONE


@router.post("/collections/{name}/eval")
async def evaluate(name: str, body: EvalRequest, caller: CallerDep, rag: ServiceDep, request: Request) -> dict:
    """Retrieval metrics per strategy (recall@k, hit rate, MRR@10, nDCG@10), optional answer quality; logged.
    The questions' embeddings are charged to the caller's key first (its LLM calls are metered as chat)."""
    if len(body.questions) > rag.settings.max_eval_questions:
        raise APIError(400, "dataset_too_large", f"at most {rag.settings.max_eval_questions} questions per eval")
    await metering.admit(request.app.state.gateway, caller, "rag.embed", rag.eval_tokens(body))
    try:
        return await rag.evaluate(caller, name, body)
    except GatewayRefused as exc:
        raise _refused(exc) from exc


@router.get("/prompts/answer")
async def prompt_template(rag: ServiceDep) -> dict:
    """Internal (RAG_SERVICE_TOKEN, not a gateway key): the prompt template answers use now, its version id,
    whether it came from the registry (and the registry's URL and last error), its messages."""
    prompts = rag.answers.prompts
    registry = prompts.status() if isinstance(prompts, RegistryPrompts) else None
    return rag.answers.template.view() | {"registry": registry}
