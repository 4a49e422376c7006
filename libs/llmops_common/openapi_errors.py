"""Make every service's OpenAPI document tell the truth about errors.

FastAPI documents a `422 HTTPValidationError` on each operation that takes input, and nothing else. The services
never answer that: their handlers (llmops_common.errors) turn a validation error into a 400 in the one error
envelope, and every route can also answer 401/403 (auth), 404, 413 (body limit), 429 and 503 in the same envelope.
A client generated from the document, or a fuzzer checking answers against it (tests/fuzz), was told a lie.

So each operation documents `4XX` and `5XX` (OpenAPI's status ranges) with the envelope's schema, and the 422 that
never comes is removed. The codes a status carries are listed in docs/troubleshooting.md (the error catalogue).
Any explicit error response a route declares stays as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

ENVELOPE = "ErrorEnvelope"
_ENVELOPE_SCHEMA: dict[str, Any] = {
    "title": ENVELOPE,
    "type": "object",
    "description": "The platform's one error envelope (OpenAI's shape plus a stable code and the request id).",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string", "description": "What went wrong, for a human."},
                "type": {"type": "string", "description": "OpenAI's error type, derived from the status."},
                "param": {"type": ["string", "null"], "description": "The input field at fault, if one is."},
                "code": {"type": "string", "description": "Stable machine-readable code (docs/troubleshooting.md)."},
                "request_id": {"type": ["string", "null"], "description": "The request's id (x-request-id)."},
            },
            # Some codes carry details (a policy check's failures, a limit's figures): documented per code.
            "additionalProperties": True,
        }
    },
}
_ERROR_RESPONSES = {
    "4XX": "The request was refused (bad input 400, no or bad credentials 401, not allowed 403, unknown 404, "
    "conflict 409, body too large 413, rate or budget 429, ...): the error envelope; `code` says which.",
    "5XX": "The service or one it depends on could not answer (502/503/504, with `Retry-After` where a retry "
    "helps): the error envelope.",
}
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref") == _FASTAPI_VALIDATION


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `document` in place (idempotent): the envelope on every operation, FastAPI's 422 removed."""
    reference = {"$ref": f"#/components/schemas/{ENVELOPE}"}
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "put", "post", "delete", "patch", "head", "options"}:
                continue
            responses = operation.setdefault("responses", {})
            if "422" in responses and _is_fastapi_422(responses["422"]):
                del responses["422"]
            for status, description in _ERROR_RESPONSES.items():
                responses.setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": reference}}}
                )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ENVELOPE] = _ENVELOPE_SCHEMA
    if _FASTAPI_VALIDATION not in json.dumps(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def install_error_documentation(app: FastAPI) -> None:
    """Post-process `app`'s generated document once, on first use (FastAPI caches it in app.openapi_schema)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# `responses=` of a route that streams when asked (`stream: true`): its 200 is JSON or Server-Sent Events.
STREAMING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer as JSON, or with `stream: true` as Server-Sent Events (`data: {...}` frames "
        "ending in `data: [DONE]`; an error after the stream began is an error event before [DONE]).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
