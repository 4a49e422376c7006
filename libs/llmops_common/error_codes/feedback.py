"""The feedback service's codes (:8004): feedback on requests, labeling, drift."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

CODES = (
    ErrorCode(
        "request_not_found",
        404,
        "no trace event of that request id for your team (registry: no principal request with that id)",
        "the id is wrong, belongs to another team, or its trace event has not arrived yet (feedback waits 1.5 s; "
        "check the consumer: `curl -s localhost:8004/metrics | grep backlog`)",
        "no request '{request_id}' for your team",
    ),
    ErrorCode(
        "team_forbidden",
        403,
        "a team key tried to act on another team",
        "leave `team` out (a key always means its own team), or use the admin token",
        "a team key can only act on its own team",
    ),
    ErrorCode(
        "ambiguous_request_id",
        409,
        "several teams used this request id (admin token only)",
        'add `?team=` (or `"team"` in the body)',
        "several teams used request id '{request_id}'; pass the team",
    ),
    ErrorCode(
        "item_not_found",
        404,
        "no labeling item with that id for your team",
        "`GET /v1/labeling/next` reserves the next open item",
        "no labeling item {item_id} for your team",
    ),
    ErrorCode(
        "item_closed",
        409,
        "the labeling item was already labeled or closed",
        "nothing to do; pick an open item",
        "{reason}",
    ),
    ErrorCode(
        "store_unavailable",
        503,
        "the feedback store (SQLite file or PostgreSQL) failed",
        "events stay unacknowledged in Redis and are retried: nothing is lost. Check the database (`make logs "
        "S=feedback`)",
        "the feedback store is unavailable: {reason}",
    ),
    ErrorCode(
        "storage_full",
        507,
        "the disk under the feedback store (SQLite file, PostgreSQL) or its export folder is full; nothing was written",
        "free space (old exports in FEEDBACK_EXPORT_DIR, other files on that disk); the service recovers by itself: "
        "events wait in Redis and are stored once space is back, then retry the write (docs/operations.md)",
        "the feedback service's disk is full: {reason}",
    ),
)
