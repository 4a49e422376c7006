"""Request parsing on the hot path: clear 400s for bad bodies, max_tokens bounded by default."""

from __future__ import annotations

import pytest

from llmops_common.errors import APIError
from services.gateway.requests import parse_request


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"messages":[{"role":"user","content":"x"}]}', "model is required"),
        (b'{"model":"m","messages":[]}', "messages must be a non-empty list"),
        (b'{"model":"m","messages":["hi"]}', "object with a role"),
        (b'{"model":"m","messages":[{"role":"user"}],"stream":"yes"}', "stream must be"),
        (b'{"model":"m","messages":[{"role":"user"}],"max_tokens":0}', "max_tokens must be a positive integer"),
        (b'{"model":"m","messages":[{"role":"user"}],"max_tokens":true}', "max_tokens must be a positive integer"),
    ],
)
def test_bad_bodies_are_400(raw: bytes, message: str) -> None:
    with pytest.raises(APIError) as err:
        parse_request("chat", raw, 100)
    assert err.value.status == 400 and message in err.value.message


def test_default_max_tokens_is_applied_and_usage_flag_read() -> None:
    req = parse_request(
        "chat",
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,'
        b'"stream_options":{"include_usage":true}}',
        42,
    )
    assert req.max_tokens == 42 and req.payload["max_tokens"] == 42 and req.stream and req.wants_usage
    assert parse_request("completion", b'{"model":"m","prompt":"x","max_tokens":5}', 42).max_tokens == 5
    with pytest.raises(APIError):
        parse_request("completion", b'{"model":"m"}', 42)
