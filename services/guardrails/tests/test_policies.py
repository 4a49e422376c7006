"""Policy file: validation, inheritance, resolution; fail-open / fail-closed and timeouts in the checker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.guardrails.checker import Checker
from services.guardrails.detectors.base import CheckInput, Finding
from services.guardrails.policies import PolicyError, PolicySet, UnknownPolicy
from services.guardrails.settings import GuardrailsSettings


def test_shipped_policy_file_loads_and_resolves() -> None:
    policies = PolicySet.load(GuardrailsSettings().policy_file)
    assert policies.resolve(None, None).name == "default"
    assert policies.resolve("research", "anything").name == "permissive"
    assert policies.resolve("support", None).name == "strict"
    assert policies.resolve("support", "internal-wiki").name == "default"
    assert policies.resolve("support", None, override="permissive").name == "permissive"
    with pytest.raises(UnknownPolicy):
        policies.resolve(None, None, override="nope")


def test_extends_merges_detector_settings() -> None:
    policies = PolicySet.load(GuardrailsSettings().policy_file)
    strict = policies.policies["strict"]
    assert strict.input["pii"].actions["CREDIT_CARD"] == "block"
    assert strict.input["pii"].action == "redact"  # inherited
    assert strict.fail_mode == "closed" and policies.policies["permissive"].fail_mode == "open"
    assert list(strict.input) == ["length", "injection", "secrets", "pii", "denylist", "topics"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"policies": {"a": {"input": {"nonsense": {}}}}, "default_policy": "a"}, "unknown input detector"),
        ({"policies": {"a": {"fail_mode": "sideways"}}, "default_policy": "a"}, "fail_mode"),
        ({"policies": {"a": {"extends": "b"}, "b": {"extends": "a"}}, "default_policy": "a"}, "cycle"),
        ({"policies": {"a": {}}, "default_policy": "missing"}, "not defined"),
        ({"policies": {"a": {}}, "default_policy": "a", "teams": {"t": {"policy": "zzz"}}}, "not defined"),
        ({"policies": {"a": {"input": {"denylist": {"patterns": ["("]}}}}, "default_policy": "a"}, "bad pattern"),
        ({"policies": {"a": {"input": {"pii": {"action": "explode"}}}}, "default_policy": "a"}, "action"),
    ],
)
def test_invalid_policy_files_fail_at_load(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        PolicySet.from_dict(raw)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"output": {"groundedness": {"treshold": 0.9}}},
            "output.groundedness.treshold: unknown key 'treshold' (did you mean 'threshold'?)",
        ),
        ({"input": {"injection": {"model_treshold": 0.5}}}, "did you mean 'model_threshold'?"),
        (
            {"input": {"topics": {"denied": {"w": {"keyword": ["x"]}}}}},
            "topics.denied.w.keyword: unknown key 'keyword' (did you mean 'keywords'?)",
        ),
        ({"input": {"pii": {"entities": ["PERSN"]}}}, "did you mean 'PERSON'?"),
        ({"content": {"injecton": {}}}, "unknown content detector 'injecton' (did you mean 'injection'?)"),
        ({"timout_ms": 100}, "policies.a.timout_ms: unknown key 'timout_ms' (did you mean 'timeout_ms'?)"),
    ],
)  # fmt: skip
def test_a_typo_fails_the_start_naming_file_key_and_closest_name(
    tmp_path: Path, section: dict[str, Any], message: str
) -> None:
    """Issue 19: a misspelt option used to be ignored silently (the default threshold ran instead)."""
    import yaml

    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump({"default_policy": "a", "policies": {"a": section}}))
    with pytest.raises(PolicyError) as caught:
        PolicySet.load(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_the_app_refuses_to_start_on_a_typo(tmp_path: Path) -> None:
    from services.guardrails.app import create_app

    path = tmp_path / "p.yaml"
    path.write_text("default_policy: a\npolicies:\n  a:\n    output:\n      groundedness: {treshold: 0.9}\n")
    with pytest.raises(PolicyError, match="treshold"):
        create_app(GuardrailsSettings(policy_file=path, dev_mode=True))


def test_content_section_falls_back_to_input() -> None:
    policies = PolicySet.from_dict({"default_policy": "a", "policies": {"a": {"input": {"pii": {"action": "flag"}}}}})
    policy = policies.resolve(None, None)
    assert [name for name, _, _ in policy.plan("content")] == ["pii"]
    shipped = PolicySet.load(GuardrailsSettings().policy_file)
    assert shipped.policies["default"].content is not None
    assert shipped.policies["permissive"].section("content")["injection"].action == "flag"


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("policies: [unclosed")
    with pytest.raises(PolicyError):
        PolicySet.load(bad)


class Exploding:
    """A detector that always fails, to exercise the fail mode."""

    name = "pii"

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        raise RuntimeError("boom")


class Slow:
    """A detector that spends the whole budget."""

    name = "injection"

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        import time

        time.sleep(0.05)
        return []


def _policies(fail_mode: str, timeout_ms: int = 250) -> PolicySet:
    return PolicySet.from_dict(
        {
            "default_policy": "p",
            "policies": {
                "p": {"fail_mode": fail_mode, "timeout_ms": timeout_ms, "input": {"injection": {}, "pii": {}}}
            },
        }
    )


def test_fail_closed_blocks_and_fail_open_allows(fresh_checker: Checker) -> None:
    checker = Checker(
        {"input": {**fresh_checker.detectors["input"], "pii": Exploding()}, "output": {}}, fresh_checker.metrics
    )
    inp = CheckInput(text="hello", direction="input")
    closed = checker.check("input", inp, _policies("closed").resolve(None, None)).as_dict()
    assert closed["decision"] == "block" and closed["fail_mode"] == "closed"
    assert closed["findings"][0]["category"] == "detector_error" and "boom" in closed["errors"][0]
    opened = checker.check("input", inp, _policies("open").resolve(None, None)).as_dict()
    assert opened["decision"] == "allow" and opened["fail_mode"] == "open" and opened["errors"]


def test_a_detector_that_overruns_the_budget_is_an_error_not_a_silent_pass(fresh_checker: Checker) -> None:
    """Issue 13 item 6: a slow detector that finished after timeout_ms used to count as a normal result."""
    checker = Checker({"input": {"injection": Slow()}, "output": {}}, fresh_checker.metrics)
    for mode, expected in (("closed", "block"), ("open", "allow")):
        result = checker.check(
            "input", CheckInput(text="hi", direction="input"), _policies(mode, 10).resolve(None, None)
        )
        assert result.decision == expected
        assert result.errors and "injection: took" in result.errors[0] and "timeout_ms=10" in result.errors[0]
    sample = fresh_checker.metrics.detector_timeouts.labels("input", "injection")._value.get()
    assert sample >= 2


def test_timeout_applies_the_fail_mode(fresh_checker: Checker) -> None:
    checker = Checker(
        {"input": {"injection": Slow(), "pii": fresh_checker.detectors["input"]["pii"]}, "output": {}},
        fresh_checker.metrics,
    )
    result = checker.check(
        "input", CheckInput(text="hi", direction="input"), _policies("closed", timeout_ms=10).resolve(None, None)
    )
    assert result.decision == "block" and "timeout" in result.errors[0]


def test_per_entity_actions_and_min_score(fresh_checker: Checker) -> None:
    strict = PolicySet.load(GuardrailsSettings().policy_file).policies["strict"]
    inp = CheckInput(text="mail me: a@b.io", direction="input")
    assert fresh_checker.check("input", inp, strict).decision == "redact"
    inp = CheckInput(text="card 4111 1111 1111 1111", direction="input")
    assert fresh_checker.check("input", inp, strict).decision == "block"
    lenient = PolicySet.from_dict(
        {"default_policy": "p", "policies": {"p": {"input": {"pii": {"min_score": 0.99, "action": "redact"}}}}}
    )
    inp = CheckInput(text="call (415) 555-0132", direction="input")  # phones score 0.75
    assert fresh_checker.check("input", inp, lenient.resolve(None, None)).decision == "allow"


class Counting:
    """Counts its runs."""

    name = "injection"

    def __init__(self) -> None:
        self.runs = 0

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        self.runs += 1
        return []


def test_repeated_messages_are_judged_once_per_call(fresh_checker: Checker) -> None:
    """Issue 12 row 11: 30,000 copies of one message cost 30,000 checks."""
    counting = Counting()
    checker = Checker({"input": {"injection": counting}, "output": {}}, fresh_checker.metrics)
    policy = _policies("closed").resolve(None, None)
    items: list[tuple[Any, CheckInput]] = [("input", CheckInput(text="hello there", direction="input"))] * 500
    items += [
        ("content", CheckInput(text="hello there", direction="input")),
        ("input", CheckInput(text="", direction="input")),
    ]
    result = checker.check_many(items, policy, "input")
    assert counting.runs == 2 and len(result.items) == 502  # once as input, once as content; empty: not at all
    latency = fresh_checker.metrics.detector_latency.labels("input", "injection")
    assert latency._sum.get() > 0  # observed once per call, not per message


def test_a_resent_history_is_read_once_and_failures_are_not_remembered(fresh_checker: Checker) -> None:
    from services.guardrails.verdict_cache import VerdictCache

    counting = Counting()
    checker = Checker({"input": {"injection": counting}, "output": {}}, fresh_checker.metrics, VerdictCache(100, 60))
    policy = _policies("closed").resolve(None, None)
    history = [("input", CheckInput(text=f"turn {i}", direction="input")) for i in range(3)]
    checker.check_many(history, policy, "input")
    checker.check_many([*history, ("input", CheckInput(text="turn 3", direction="input"))], policy, "input")
    assert counting.runs == 4  # turns 0-2 once, then only the new turn
    other = _policies("open").resolve(None, None)  # different settings: judged again
    checker.check_many(history[:1], other, "input")
    assert counting.runs == 5

    failing = Checker({"input": {"pii": Exploding()}, "output": {}}, fresh_checker.metrics, VerdictCache(100, 60))
    for _ in range(2):
        result = failing.check("input", CheckInput(text="hello", direction="input"), policy)
        assert result.decision == "block" and result.errors  # reported again: the failure was not cached


def test_verdict_cache_is_bounded_and_expires() -> None:
    import time

    from services.guardrails.verdict_cache import VerdictCache

    cache = VerdictCache(size=2, ttl_s=0.05)
    keys = [cache.key("p", "input", t) for t in ("a", "b", "c")]
    for key in keys:
        cache.put(key, [])
    assert cache.get(keys[0]) is None and cache.get(keys[2]) == []
    time.sleep(0.06)
    assert cache.get(keys[2]) is None
