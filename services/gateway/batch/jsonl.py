"""Validation of batch input files (OpenAI's JSONL shape), done whole at upload so nothing half-valid is stored.

One line: {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from llmops_common.errors import APIError
from services.gateway.requests import Kind

# Batch URL -> the proxy's request kind.
ENDPOINTS: dict[str, Kind] = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
MAX_CUSTOM_ID = 512
# Holds one line's body to the same allow-list and bounds as online traffic (raises the APIError it would get).
BodyCheck = Callable[[Kind, bytes], None]


@dataclass(frozen=True)
class FileLimits:
    """What an upload may hold."""

    max_bytes: int
    max_lines: int
    max_line_body_bytes: int
    team_max_bytes: int | None = None  # all of a team's stored files together (None: no cap)


@dataclass
class ParsedFile:
    """A validated batch file: one canonical JSON text per request line, and the URLs they use."""

    lines: list[str]
    urls: list[str]


def file_too_large(limit: int) -> APIError:
    """413 naming the limit (also used before the whole upload is read)."""
    return APIError(
        413, "file_too_large", f"the file exceeds the batch upload limit of {limit} bytes; split it", param="file"
    )


def _bad_line(number: int, message: str) -> APIError:
    return APIError(400, "invalid_batch_line", f"line {number}: {message}", param="file", extra={"line": number})


def _check_line(number: int, item: Any, seen: set[str], limits: FileLimits, check: BodyCheck | None) -> str:
    """Return the line's URL; raise a 400 naming the line when anything is off."""
    if not isinstance(item, dict):
        raise _bad_line(number, "must be a JSON object")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise _bad_line(number, f"custom_id must be a non-empty string of at most {MAX_CUSTOM_ID} characters")
    if custom_id in seen:
        raise _bad_line(number, f"custom_id '{custom_id}' is used twice; each line needs its own")
    seen.add(custom_id)
    if item.get("method") != "POST":
        raise _bad_line(number, 'method must be "POST"')
    url = item.get("url")
    if url not in ENDPOINTS:
        raise _bad_line(number, f"url must be one of {', '.join(ENDPOINTS)} (got {url!r})")
    body = item.get("body")
    if not isinstance(body, dict):
        raise _bad_line(number, "body must be a JSON object (the request body of the url)")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad_line(number, "body.model is required (a non-empty string)")
    if body.get("stream"):
        raise _bad_line(number, "body.stream must be false or absent: batch answers are not streamed")
    if len(orjson.dumps(body)) > limits.max_line_body_bytes:
        raise _bad_line(number, f"body exceeds the request limit of {limits.max_line_body_bytes} bytes")
    extra = set(item) - {"custom_id", "method", "url", "body"}
    if extra:
        raise _bad_line(number, f"unknown field(s): {', '.join(sorted(extra))}")
    if check is not None:
        try:
            check(ENDPOINTS[url], orjson.dumps(body))
        except APIError as exc:  # refused at upload, not hours later line by line
            raise _bad_line(number, f"body: {exc.message}") from None
    return str(url)


def parse_batch_file(raw: bytes, limits: FileLimits, check: BodyCheck | None = None) -> ParsedFile:
    """Validate every line of an upload; blank lines are skipped, the first bad line is reported by number."""
    if len(raw) > limits.max_bytes:
        raise file_too_large(limits.max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(
            400, "invalid_file_encoding", f"the file is not UTF-8 (byte {exc.start})", param="file"
        ) from None
    lines: list[str] = []
    urls: set[str] = set()
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(lines) >= limits.max_lines:
            raise APIError(
                400,
                "too_many_lines",
                f"the file has more than {limits.max_lines} requests (limit per batch); split it",
                param="file",
            )
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _bad_line(number, f"not valid JSON ({exc})") from None
        urls.add(_check_line(number, item, seen, limits, check))
        lines.append(orjson.dumps(item).decode())
    if not lines:
        raise APIError(400, "empty_file", "the file holds no requests (one JSON object per line)", param="file")
    return ParsedFile(lines, sorted(urls))


def line_request(line: str) -> tuple[str, Kind, bytes]:
    """(custom_id, kind, raw body) of a stored, already validated line."""
    item = orjson.loads(line)
    return item["custom_id"], ENDPOINTS[item["url"]], orjson.dumps(item["body"])
