"""The rag service's codes (:8002). Refusals of the gateway (limits, budgets, guardrails) are passed on with the
gateway's own code, prefixed "the gateway refused …"; they are listed under the gateway."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

CODES = (
    ErrorCode(
        "not_ready",
        503,
        "the service is still starting (rag: the embedder is loading; guardrails: the detectors are loading)",
        "retry after `Retry-After` (2 s); a few seconds after start",
        "the service is still starting; retry shortly",
    ),
    ErrorCode(
        "collection_not_found",
        404,
        "no collection of that name for your team",
        "collections are per team: another team's collection is invisible",
        "collection '{name}' does not exist",
    ),
    ErrorCode(
        "collection_exists",
        409,
        "your team already has a collection of that name",
        "reuse it, or `DELETE /v1/collections/{name}`",
        "collection '{name}' already exists",
    ),
    ErrorCode(
        "document_not_found",
        404,
        "no document with that id in the collection",
        "`GET /v1/collections/{name}/documents` lists the ids",
        "document '{doc_id}' is not in '{name}'",
    ),
    ErrorCode(
        "ingest_run_not_found",
        404,
        "no ingestion run with that id in the collection",
        "the collection's `last_ingest_run` (`GET /v1/collections/{name}`) names the latest run",
        "ingestion run '{run_id}' is not in '{name}'",
    ),
    ErrorCode(
        "job_not_found",
        404,
        "no job with that id (jobs are kept in memory: a restart forgets them)",
        "ingest again (what was indexed is skipped), or list the collection's documents",
        "job '{job_id}' does not exist (jobs are kept in memory)",
    ),
    ErrorCode(
        "too_many_files",
        413,
        "more files in one upload than `RAG_MAX_UPLOAD_FILES`",
        "upload in several requests",
        "{count} files in one upload; at most {limit}",
    ),
    ErrorCode(
        "too_many_documents",
        413,
        "more documents in one ingestion job than `RAG_MAX_DOCUMENTS_PER_JOB`",
        "split the ingest into several jobs",
        "{count} documents in one job; at most {limit} (split the ingest)",
    ),
    ErrorCode(
        "too_many_for_wait",
        400,
        "`wait=true` with more documents than are ingested while the caller waits",
        "drop `wait=true` and poll the job (`GET /v1/jobs/{id}`)",
        "wait=true accepts at most {limit} documents; poll the job instead",
    ),
    ErrorCode(
        "too_many_jobs",
        429,
        "your team already has the most ingestion jobs queued or running",
        "wait for one to finish or cancel it (`POST /v1/jobs/{id}/cancel`); honour `Retry-After`",
        "your team already has {limit} ingestion jobs queued or running; wait for one to finish or cancel it "
        "(POST /v1/jobs/{{id}}/cancel)",
    ),
    ErrorCode(
        "empty_body",
        400,
        "a JSONL ingestion body without any document",
        "one JSON document per line",
        "the JSONL body has no documents",
    ),
    ErrorCode(
        "dataset_too_large",
        400,
        "more questions in one eval than `RAG_MAX_EVAL_QUESTIONS`",
        "split the eval set",
        "at most {limit} questions per eval",
    ),
    ErrorCode(
        "vector_store_unavailable",
        503,
        "Qdrant failed (also a job's `error_code`), with `Retry-After: 5`",
        "the Qdrant server is down, or another process holds the local-mode folder lock (run `ingest-dir` before "
        "starting the service, or through its URL)",
        "{qdrant_error}",
    ),
    ErrorCode(
        "gateway_error",
        (400, 401, 402, 403, 429),
        "the gateway refused rag's call with an answer that carried no code of its own",
        "look at the gateway's log for the request id",
        "the gateway refused the LLM call: gateway answered {status}",
    ),
)

# Not HTTP answers: the `code` of a failed document in a job's `results`, or the job's own `error_code`.
ITEM_CODES = (
    ErrorCode(
        "unsupported_type",
        None,
        "the document's content type or file extension is not one rag reads",
        "use .txt, .md, .html or .pdf (or send the right content type)",
        "cannot tell the type of '{filename}' (use .txt, .md, .html, .pdf)",
    ),
    ErrorCode(
        "binary_content",
        None,
        "the document looks binary, not text",
        "convert it to text (or upload the PDF as a file)",
        "the content looks binary, not text",
    ),
    ErrorCode(
        "invalid_pdf",
        None,
        "the PDF could not be read (or was sent as text instead of a file)",
        "upload it as a file (`-F files=@doc.pdf`); re-export a damaged PDF",
        "the PDF could not be read: {reason}",
    ),
    ErrorCode(
        "too_many_pages",
        None,
        "the PDF has more pages than the parser accepts",
        "split the PDF",
        "the PDF has {count} pages; at most {limit}",
    ),
    ErrorCode(
        "parse_time_limit",
        None,
        "parsing the PDF took more CPU time than allowed (a PDF bomb stops here, not in the worker)",
        "split or simplify the PDF, or extract its text yourself",
        "parsing the PDF took over {limit} CPU seconds (stopped at page {page})",
    ),
    ErrorCode(
        "decompression_limit",
        None,
        "a PDF stream expands beyond the parser's limits",
        "extract the text yourself and ingest that",
        "the PDF expands beyond the parser's limits ({cap} bytes per stream): {reason}",
    ),
    ErrorCode(
        "empty_document",
        None,
        "the document has no text",
        "check the file; a scanned PDF has images, not text",
        "the document has no text",
    ),
    ErrorCode(
        "document_too_short",
        None,
        "the document has fewer characters than `RAG_MIN_DOC_CHARS`",
        "merge short notes into one document",
        "the document has {count} characters; at least {limit}",
    ),
    ErrorCode(
        "document_too_long",
        None,
        "the document has more characters than `RAG_MAX_DOC_CHARS`",
        "split the document",
        "the document has {count} characters; at most {limit}",
    ),
    ErrorCode(
        "invalid_line",
        None,
        "a line of a JSONL ingestion body is not a valid document",
        "fix that line: the message names it",
        "line {line}: {reason}",
    ),
    ErrorCode(
        "collection_deleted",
        None,
        "the job's `error_code`: the collection was deleted while the job ran",
        "nothing to do if that was meant; otherwise create the collection and ingest again",
        "collection '{name}' was deleted while the job ran",
    ),
    ErrorCode(
        "ingestion_failed",
        None,
        "the job's `error_code`: an unexpected error stopped the job",
        "the traceback is in the rag log (`ingestion job failed` with the job id); report it",
        "{exception}: {reason}",
    ),
)
