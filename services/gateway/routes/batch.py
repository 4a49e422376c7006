"""OpenAI-compatible files and batches routes: thin wrappers over BatchService."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from llmops_common.errors import APIError
from services.gateway.batch.jsonl import file_too_large
from services.gateway.batch.service import BatchService
from services.gateway.keys import KeyRecord

router = APIRouter(prefix="/v1", tags=["batch"])
_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "JSONL, one request a line"},
                        "purpose": {"type": "string", "enum": ["batch"]},
                        "expires_after[anchor]": {
                            "type": "string",
                            "enum": ["created_at"],
                            "description": "Optional; with expires_after[seconds].",
                        },
                        "expires_after[seconds]": {
                            "type": "integer",
                            "minimum": 3600,
                            "maximum": 2592000,
                            "description": "Seconds after upload the file expires (default GATEWAY_BATCH_FILE_TTL_S).",
                        },
                    },
                }
            }
        },
    }
}
_CREATE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input_file_id", "endpoint", "completion_window"],
                    "properties": {
                        "input_file_id": {"type": "string"},
                        "endpoint": {"type": "string", "enum": ["/v1/chat/completions", "/v1/completions"]},
                        "completion_window": {"type": "string", "enum": ["24h"]},
                        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
            }
        },
    }
}


async def _caller(request: Request, meter: str | None = None) -> tuple[BatchService, KeyRecord]:
    """The batch service and the caller's key; `meter` counts the request against the key's rpm and budget
    (uploads and batch creation: each one stores data or queues work)."""
    record = await request.app.state.proxy.authenticate(request.headers.get("authorization"))
    if meter is not None:
        await request.app.state.usage.admit(record, meter)
    return request.app.state.batch, record


@router.post("/files", openapi_extra=_UPLOAD_DOC)
async def upload_file(request: Request) -> dict[str, Any]:
    """Upload a JSONL batch input file (multipart: `file`, `purpose=batch`); every line is validated now."""
    batch, record = await _caller(request, "files.upload")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except MultiPartException as exc:
        raise APIError(400, "invalid_upload", f"not a valid multipart upload: {exc.message}") from None
    try:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "invalid_request", "file is required (multipart field `file`)", param="file")
        if not isinstance(purpose, str):
            raise APIError(400, "invalid_request", "purpose is required (multipart field `purpose`)", param="purpose")
        if upload.size is not None and upload.size > batch.limits.max_bytes:
            raise file_too_large(batch.limits.max_bytes)
        raw = await upload.read()
        return await batch.upload(record, upload.filename or "", purpose, raw, _expires_after(form))
    finally:
        await form.close()  # spooled temp files


def _expires_after(form: FormData) -> dict[str, Any] | None:
    """OpenAI's `expires_after` object as the official client sends it in a form (bracketed field names)."""
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    return {"anchor": anchor, "seconds": int(seconds) if isinstance(seconds, str) and seconds.isdigit() else seconds}


@router.get("/files")
async def list_files(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> dict[str, Any]:
    """The caller's team's files, newest first."""
    batch, record = await _caller(request)
    return await batch.list_files(record, limit)


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict[str, Any]:
    """One file's metadata."""
    batch, record = await _caller(request)
    return await batch.get_file(record, file_id)


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    """Delete a file and its contents (409 while a batch that has not ended uses it)."""
    batch, record = await _caller(request)
    return await batch.delete_file(record, file_id)


@router.get("/files/{file_id}/content")
async def file_content(request: Request, file_id: str) -> Response:
    """The JSONL text of an input, output or error file."""
    batch, record = await _caller(request)
    return Response(await batch.file_content(record, file_id), media_type="application/jsonl")


@router.post("/batches", openapi_extra=_CREATE_DOC)
async def create_batch(request: Request) -> dict[str, Any]:
    """Queue a batch over an uploaded file; poll it with GET /v1/batches/{id}."""
    batch, record = await _caller(request, "batches.create")
    try:
        body = await request.json()
    except ValueError:
        raise APIError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "invalid_request", "request body must be a JSON object")
    return await batch.create(record, body)


@router.get("/batches")
async def list_batches(
    request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)
) -> dict[str, Any]:
    """The caller's team's batches, newest first (`after` = last id of the previous page)."""
    batch, record = await _caller(request)
    return await batch.list(record, after, limit)


@router.get("/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str) -> dict[str, Any]:
    """A batch with its status and request counts."""
    batch, record = await _caller(request)
    return await batch.get(record, batch_id)


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> dict[str, Any]:
    """Cancel a batch: lines in flight finish, the rest are skipped; results so far stay downloadable."""
    batch, record = await _caller(request)
    return await batch.cancel(record, batch_id)
