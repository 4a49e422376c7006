"""One error envelope for every service, in OpenAI's shape plus a stable code and the request id.

{"error": {"message": "...", "type": "invalid_request_error", "param": null,
           "code": "model_not_allowed", "request_id": "req_..."}}
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops_common.request_id import current_request_id
from llmops_common.responses import JSONBytesResponse

log = logging.getLogger("llmops.errors")

# OpenAI's `type` values, derived from the status so callers can branch the usual way.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    """The envelope's `type` for a status (the error catalogue documents codes with it too)."""
    return _TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")


class APIError(Exception):
    """An error a route can raise; it is rendered in the one envelope with its status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(status: int, code: str, message: str, param: str | None = None, **extra: Any) -> dict[str, Any]:
    """Build the envelope as a plain dict (also used inside SSE streams)."""
    body: dict[str, Any] = {
        "message": message,
        "type": error_type(status),
        "param": param,
        "code": code,
        "request_id": current_request_id(),
    }
    body.update(extra)
    return {"error": body}


def error_response(err: APIError) -> JSONBytesResponse:
    """Render an APIError as a JSON response."""
    return JSONBytesResponse(
        error_body(err.status, err.code, err.message, err.param, **err.extra),
        status_code=err.status,
        headers=err.headers,
    )


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid request")
    return (f"{param}: {msg}" if param else msg), param


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception a service can raise onto the envelope; nothing leaks a traceback."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONBytesResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONBytesResponse:
        message, param = _describe_validation(exc)
        return error_response(APIError(400, "invalid_request", message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONBytesResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(APIError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONBytesResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(APIError(500, "internal_error", "internal error; see the service log"))
