"""Request parsing on the hot path: clear 400s for bad bodies, max_tokens bounded by default."""

from __future__ import annotations

import pytest

from llmops_common.errors import APIError
from services.gateway.pricing import Price
from services.gateway.requests import check_request, parse_request
from services.gateway.routing import ModelRoute


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"messages":[{"role":"user","content":"x"}]}', "model is required"),
        (b'{"model":"m"}', "messages must be a non-empty list"),
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


ROUTE = ModelRoute("m", Price(), [])


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b'{"model":"m","messages":[]}', "invalid_request", "must be a non-empty list"),
        (b'{"model":"m","messages":["hi"]}', "invalid_request", "object with a role"),
        (b'{"model":"m","messages":[{"role":"function","content":"x"}]}', "invalid_request", "with a role"),
        (b'{"model":"m","messages":[{"role":"user","content":"x","n_probs":3}]}', "unknown_field", "unknown field"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"n_predict":200}', "unknown_field", "n_predict"),
        (b'{"model":"m","messages":[{"role":"user","content":null}]}', "invalid_request", "content"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"prompt":"x"}', "unknown_field", "prompt"),
    ],
)
def test_bodies_are_held_to_the_allow_list(raw: bytes, code: str, message: str) -> None:
    """Issue 12 rows 2, 3 and 6: unknown fields (top-level or in a message) and malformed messages are 400s."""
    req = parse_request("chat", raw, 100)
    with pytest.raises(APIError) as err:
        check_request(req, ROUTE, max_messages=10)
    assert err.value.status == 400 and err.value.code == code and message in err.value.message


def test_completion_prompts_must_be_text() -> None:
    """Row 2: token-id prompts cannot be read by the guardrails, so they are refused."""
    for raw in (
        b'{"model":"m","prompt":[1,2,3]}',
        b'{"model":"m","prompt":null}',
        b'{"model":"m","prompt":"x","best_of":9}',
    ):
        with pytest.raises(APIError):
            check_request(parse_request("completion", raw, 100), ROUTE, max_messages=10)
    ok = parse_request("completion", b'{"model":"m","prompt":["a"],"echo":false,"logprobs":2}', 100)
    check_request(ok, ROUTE, max_messages=10)


def test_n_scales_the_output_bound_up_to_the_route_limit() -> None:
    """Row 3: `n` choices may cost n times max_tokens, so the reservation covers all of them."""
    route = ModelRoute("m", Price(), [], max_n=4)
    req = parse_request("chat", b'{"model":"m","messages":[{"role":"user","content":"x"}],"n":3,"max_tokens":5}', 9)
    check_request(req, route, max_messages=10)
    assert req.max_output_tokens == 15
