"""`make load`'s pass criteria (bench/load.py): refusals only 429/503 with Retry-After, never another 5xx nor a
failed or broken request, and the admitted p99 of each kind within 3x its unloaded p99."""

from __future__ import annotations

from bench import load
from bench.load import Outcome, Phase, coded, judge


def phase(*outcomes: tuple[str, str, float, bool]) -> Phase:
    return Phase("p", 1, 1.0, [Outcome(kind, status, seconds, retry, 0.0) for kind, status, seconds, retry in outcomes])


UNLOADED = phase(("chat", "200", 1.0, False), ("check", "200", 0.01, False))


def test_a_hold_with_only_polite_refusals_and_bounded_latency_passes() -> None:
    hold = phase(("chat", "200", 2.9, False), ("chat", "429 server_overloaded", 0.1, True),
                 ("chat", "503 guardrails_unavailable", 0.1, True), ("check", "200", 0.02, False))  # fmt: skip
    verdict = judge(UNLOADED, hold)
    assert verdict["passed"], verdict
    assert verdict["p99"]["chat"]["ratio"] == 2.9


def test_each_broken_criterion_is_named() -> None:
    hold = phase(
        ("chat", "503 no_deployment_available", 0.1, False),
        ("chat", "502 no_deployment_available", 1, False),
        ("chat", "ReadTimeout", 180, False),
        ("chat", "200 with an error event upstream_stream_error", 1, False),
        ("chat", "200", 3.5, False),
        ("check", "200", 0.02, False),
    )
    verdict = judge(UNLOADED, hold)
    assert not verdict["passed"]
    assert verdict["refusals_without_retry_after"] == {"503 no_deployment_available": 1}
    assert verdict["server_errors"] == {"502 no_deployment_available": 1}
    assert verdict["client_side_failures"] == {"ReadTimeout": 1, "200 with an error event upstream_stream_error": 1}
    assert verdict["p99"]["chat"]["within"] is False and verdict["p99"]["check"]["within"] is True


def test_an_error_status_keeps_its_code() -> None:
    assert coded(200, "{}") == "200"
    assert coded(429, '{"error": {"message": "busy", "code": "server_overloaded"}}') == "429 server_overloaded"
    assert coded(500, "not json") == "500"


async def test_the_unloaded_reference_is_topped_up_cheapest_kind_first() -> None:
    mix = load.Mix.__new__(load.Mix)  # no platform: only the top-up's choice of kinds is under test
    sent: list[str] = []

    async def send(kind: str) -> load.Outcome:
        sent.append(kind)
        return load.Outcome(kind, "200", 0.01, False, 0.0)

    mix.send = send  # type: ignore[method-assign]
    unloaded = load.Phase("unloaded", 1, 60)
    unloaded.outcomes += [load.Outcome("chat", "200", 1.0, False, 0.0), load.Outcome("rag", "429 x", 0.1, True, 0.0)]
    # The check's p99 needs more samples than a max of 10, and they cost milliseconds (--unloaded-min-check).
    await mix.top_up(unloaded, {"check": 5, "chat": 3, "stream": 3, "rag": 3}, cap_s=60)
    assert sent == ["check"] * 5 + ["chat"] * 2 + ["stream"] * 3 + ["rag"] * 3  # a refusal is no sample
    sent.clear()
    await mix.top_up(load.Phase("unloaded", 1, 60), dict.fromkeys(load.MIX, 3), cap_s=0)
    assert sent == []  # the cap bounds it
