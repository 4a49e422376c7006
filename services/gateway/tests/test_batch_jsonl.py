"""Batch input validation: every bad line is a 400 naming its line number; limits are 413/400."""

from __future__ import annotations

import orjson
import pytest

from llmops_common.errors import APIError
from services.gateway.batch.jsonl import FileLimits, line_request, parse_batch_file

LIMITS = FileLimits(max_bytes=10_000, max_lines=3, max_line_body_bytes=500)


def line(custom_id: str = "a", **over: object) -> dict:
    item = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
    return item | over


def jsonl(*items: object) -> bytes:
    return b"\n".join(i if isinstance(i, bytes) else orjson.dumps(i) for i in items) + b"\n"


def error_of(raw: bytes, limits: FileLimits = LIMITS) -> APIError:
    with pytest.raises(APIError) as err:
        parse_batch_file(raw, limits)
    return err.value


def test_valid_file_keeps_lines_in_order_and_skips_blank_lines() -> None:
    raw = jsonl(line("a"), b"   ", line("b", url="/v1/completions", body={"model": "m", "prompt": "x"}))
    parsed = parse_batch_file(raw, LIMITS)
    assert [orjson.loads(x)["custom_id"] for x in parsed.lines] == ["a", "b"]
    assert parsed.urls == ["/v1/chat/completions", "/v1/completions"]
    custom_id, kind, body = line_request(parsed.lines[1])
    assert (custom_id, kind, orjson.loads(body)) == ("b", "completion", {"model": "m", "prompt": "x"})


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (orjson.dumps([1, 2]), "must be a JSON object"),
        (orjson.dumps(line("")), "custom_id must be a non-empty string"),
        (orjson.dumps(line("a")), "custom_id 'a' is used twice"),
        (orjson.dumps(line("z", method="GET")), 'method must be "POST"'),
        (orjson.dumps(line("z", url="/v1/embeddings")), "url must be one of"),
        (orjson.dumps(line("z", body="text")), "body must be a JSON object"),
        (orjson.dumps(line("z", body={"messages": []})), "body.model is required"),
        (orjson.dumps(line("z", body={"model": "m", "stream": True})), "body.stream must be false"),
        (orjson.dumps(line("z", body={"model": "m", "prompt": "x" * 600})), "exceeds the request limit of 500"),
        (orjson.dumps(line("z", extra=1)), "unknown field(s): extra"),
    ],
)
def test_bad_line_is_400_with_its_line_number(bad: bytes, needle: str) -> None:
    err = error_of(jsonl(line("a"), b"", bad))
    assert err.status == 400 and err.code == "invalid_batch_line" and err.param == "file"
    assert err.message.startswith("line 3: ") and needle in err.message
    assert err.extra == {"line": 3}


def test_limits_and_empty_and_encoding() -> None:
    too_big = error_of(b"x" * 10_001)
    assert too_big.status == 413 and too_big.code == "file_too_large" and "10000 bytes" in too_big.message
    too_many = error_of(jsonl(*(line(str(i)) for i in range(4))))
    assert too_many.status == 400 and too_many.code == "too_many_lines" and "more than 3" in too_many.message
    assert error_of(b"\n \n").code == "empty_file"
    assert error_of(b'{"custom_id": "\xff"}').code == "invalid_file_encoding"


def test_bodies_are_held_to_the_online_allow_list_at_upload() -> None:
    """Issue 12 row 2 (batch side): a line carrying an engine field is refused at upload, naming line and field."""
    from services.gateway.pricing import Price
    from services.gateway.requests import check_request, parse_request
    from services.gateway.routing import ModelRoute

    route = ModelRoute("m", Price(), [])

    def check(kind: str, raw: bytes) -> None:
        check_request(parse_request(kind, raw, 16), route, max_messages=10)  # type: ignore[arg-type]

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n_probs": 100000}
    with pytest.raises(APIError) as err:
        parse_batch_file(jsonl(line(), line("b", body=body)), LIMITS, check)
    assert err.value.extra["line"] == 2 and "unknown field 'n_probs'" in err.value.message
    assert len(parse_batch_file(jsonl(line()), LIMITS, check).lines) == 1
