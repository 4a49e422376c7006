"""The short fuzz run of `make test`: every operation of every service's committed OpenAPI document, as each of
its callers, a few deterministic cases each (schemathesis with a fixed seed; `make fuzz` runs the long one).

Goal, per the issue: no answer >= 500, none outside its documented status, content type or schema, none slower
than the bound (30 s: the longest documented timeout a fuzzed request meets here is the gateway's upstream one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.runner import run_schemathesis, schemathesis_cli
from tests.fuzz.targets import FuzzPlatform, fuzz_platform

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(schemathesis_cli() is None, reason="schemathesis is not installed (requirements/test.in)"),
]

# (service, caller) pairs; each caller covers the operations it is meant for (tests/fuzz/targets.py).
RUNS = [
    ("gateway", "admin"),
    ("gateway", "key"),
    ("inference", "service"),
    ("guardrails", "service"),
    ("rag", "key"),
    ("rag", "service"),
    ("feedback", "admin"),
    ("feedback", "key"),
    ("registry", "admin"),
]
# A few generated cases per operation, without schemathesis' coverage phase (its boundary cases per parameter are
# what makes the long run long; `make fuzz` runs them).
SHORT_EXAMPLES = 5
SHORT_PHASES = "examples,fuzzing"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzPlatform]:
    """The fuzzed services, each started on first use and all stopped after the module."""
    with fuzz_platform(tmp_path_factory.mktemp("fuzz")) as started:
        yield started


@pytest.mark.parametrize(("service", "caller_name"), RUNS)
def test_no_server_error_and_no_lie_in_the_schema(
    platform: FuzzPlatform, tmp_path: Path, service: str, caller_name: str
) -> None:
    target = platform.get(service)
    caller = next(c for c in target.callers if c.name == caller_name)
    result = run_schemathesis(target, caller, tmp_path, max_examples=SHORT_EXAMPLES, phases=SHORT_PHASES, timeout_s=240)
    assert result.operations, f"schemathesis ran nothing:\n{result.output[-3000:]}"
    details = "\n\n".join(f"{op}:\n" + "\n".join(cases)[:3000] for op, cases in result.failures.items())
    assert not result.failures, f"{len(result.failures)} operations failed:\n{details}"
