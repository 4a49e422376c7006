"""The gateway's files and batches API (`/v1/files`, `/v1/batches`, services/gateway/batch/)."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

CODES = (
    ErrorCode(
        "invalid_upload",
        400,
        "the upload is not a valid multipart form",
        "`curl -F purpose=batch -F file=@requests.jsonl …` (the `openai` client's `files.create` does it right)",
        "not a valid multipart upload: {reason}",
    ),
    ErrorCode(
        "invalid_purpose",
        400,
        "the gateway stores batch inputs only",
        "send `purpose=batch`",
        "purpose must be 'batch' (this gateway stores batch inputs only), got {purpose!r}",
    ),
    ErrorCode(
        "file_too_large",
        413,
        "one uploaded file is over the limit (the gateway's batch upload limit; rag's per-file upload limit)",
        "split the file",
        "the file exceeds the batch upload limit of {limit} bytes; split it",
    ),
    ErrorCode(
        "team_storage_full",
        413,
        "the team's batch files (inputs and results) would pass the cap `GATEWAY_TEAM_FILE_BYTES_MAX`",
        "`DELETE /v1/files/{id}` what you no longer need, or wait for files to expire (`GATEWAY_BATCH_FILE_TTL_S`)",
        "the team's batch files already hold {used} bytes; this file ({size} bytes) would pass the team's cap of "
        "{cap} bytes; delete files (DELETE /v1/files/{{id}}) or wait until they expire",
    ),
    ErrorCode(
        "invalid_file_encoding",
        400,
        "the file is not UTF-8",
        "save it as UTF-8 (one JSON object per line)",
        "the file is not UTF-8 (byte {position})",
    ),
    ErrorCode(
        "empty_file",
        400,
        "the file holds no request lines",
        'one JSON object per line: `{"custom_id": …, "method": "POST", "url": …, "body": …}`',
        "the file holds no requests (one JSON object per line)",
    ),
    ErrorCode(
        "too_many_lines",
        400,
        "more request lines than one batch accepts",
        "split the file into several batches",
        "the file has more than {limit} requests (limit per batch); split it",
    ),
    ErrorCode(
        "invalid_batch_line",
        400,
        "one line of the file is not a valid request (checked at upload, like a chat request); `line` says which",
        "fix that line: the message says what is wrong with it",
        "line {line}: {reason}",
    ),
    ErrorCode(
        "invalid_expires_after",
        400,
        "`expires_after` is not a valid expiry",
        '`{"anchor": "created_at", "seconds": N}` within the bounds the message gives',
        "expires_after must be {{'anchor': 'created_at', 'seconds': N}} with {low} <= N <= {high}",
    ),
    ErrorCode(
        "file_not_found",
        404,
        "no file with this id for your team (or it expired)",
        "`GET /v1/files` lists your team's files",
        "no file with id '{file_id}'",
    ),
    ErrorCode(
        "file_in_use",
        409,
        "an unfinished batch still reads the file",
        "cancel the batch or wait until it ends, then delete the file",
        "file '{file_id}' is in use by batch '{batch_id}', which is {status}; cancel the batch or wait until it "
        "ends, then delete the file",
    ),
    ErrorCode(
        "invalid_endpoint",
        400,
        "the batch's `endpoint` is not one the gateway batches",
        "use `/v1/chat/completions` or `/v1/completions`",
        "endpoint must be one of {endpoints}",
    ),
    ErrorCode(
        "invalid_completion_window",
        400,
        "`completion_window` is not `24h`",
        'send `"completion_window": "24h"`',
        "completion_window must be '24h'",
    ),
    ErrorCode(
        "invalid_metadata",
        400,
        "`metadata` is over its bounds",
        "at most 16 string pairs (keys up to 64, values up to 512 characters)",
        "metadata: at most 16 string pairs (keys <= 64, values <= 512 chars)",
    ),
    ErrorCode(
        "invalid_input_file",
        400,
        "`input_file_id` names a file that is not a batch input (e.g. a results file)",
        "upload the requests with `purpose=batch` and pass that file's id",
        "file '{file_id}' is not a batch input file",
    ),
    ErrorCode(
        "endpoint_mismatch",
        400,
        "the lines' `url` differs from the batch's `endpoint`",
        "one endpoint per batch: every line's `url` equals the batch's `endpoint`",
        "every line's url must equal the batch endpoint {endpoint}; the file uses {urls}",
    ),
    ErrorCode(
        "batch_not_found",
        404,
        "no batch with this id for your team",
        "`GET /v1/batches` lists your team's batches",
        "no batch with id '{batch_id}'",
    ),
    ErrorCode(
        "batch_not_cancellable",
        409,
        "the batch already ended",
        "nothing to cancel; its results (if any) are in its output and error files",
        "batch '{batch_id}' is {status} and cannot be cancelled",
    ),
    ErrorCode(
        "batch_expired",
        400,
        "in a batch's error file: the completion window ended before this line ran",
        "submit the lines that did not run as a new batch (their `custom_id`s are in the error file)",
        "the batch's completion window ended before this line ran",
    ),
)
