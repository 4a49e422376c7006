"""Run schemathesis (its CLI, in a subprocess: Hypothesis stays out of the test process) against one target and read
its JUnit report back as a list of operations and failures.

The checks are the issue's goals: no answer >= 500 (`not_a_server_error`), every answer in its documented schema,
status and content type (`response_schema_conformance`, `status_code_conformance`, `content_type_conformance`),
invalid input refused with a 4xx (`negative_data_rejection`), and no answer slower than `max_response_s`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz.targets import Caller, Target

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "negative_data_rejection",
)


def schemathesis_cli() -> str | None:
    """The `st` command of this interpreter's environment (LLMOPS_SCHEMATHESIS overrides it), None if absent."""
    override = os.environ.get("LLMOPS_SCHEMATHESIS")
    if override:
        return override
    # Only the venv's own: another `st` on the PATH may be something else entirely (suckless' terminal is one).
    beside = Path(sys.executable).parent / "st"
    return str(beside) if beside.exists() else None


# A test case whose only finding is a schema-violating value of the wrong JSON type that was accepted (`0` for a
# boolean, `false` for an integer): pydantic's lax mode converts those, as documented in docs/operations.md. They
# are listed in the results, not counted as failures; every other finding is.
_CASE = re.compile(r"^\d+\. Test Case ID: ", re.MULTILINE)
_FINDING = re.compile(r"^- (ST\d{3}) (.+)$", re.MULTILINE)


def _lenient_typing(case: str) -> bool:
    codes = {m.group(1) for m in _FINDING.finditer(case)}
    return codes == {"ST201"} and "Incorrect type" in case


@dataclass
class FuzzResult:
    """What one run covered and what it found."""

    service: str
    caller: str
    operations: list[str] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)  # operation -> its failing test cases, as reported
    lenient: dict[str, list[str]] = field(default_factory=dict)  # operation -> cases only of lenient JSON typing
    exit_code: int = 0
    output: str = ""

    def findings(self) -> dict[str, set[str]]:
        """Operation -> the failure codes and titles found (what a summary lists)."""
        return {
            op: {f"{m.group(1)} {m.group(2)}" for c in cases for m in _FINDING.finditer(c)} or {cases[0][:200]}
            for op, cases in self.failures.items()
        }


def run_schemathesis(
    target: Target,
    caller: Caller,
    report_dir: Path,
    *,
    max_examples: int,
    seed: int = 15,
    phases: str = "examples,coverage,fuzzing",
    max_response_s: float = 30.0,
    timeout_s: float = 600.0,
) -> FuzzResult:
    """Fuzz `target`'s operations that `caller` is for; return the operations covered and the failures."""
    cli = schemathesis_cli()
    if cli is None:
        raise RuntimeError("schemathesis is not installed (requirements/test.in pins it; run `make install`)")
    report_dir.mkdir(parents=True, exist_ok=True)
    junit = report_dir / f"{target.service}-{caller.name}.xml"
    cmd = [
        cli,
        "run",
        str(target.schema),
        "--url",
        target.url,
        "--header",
        f"Authorization: Bearer {caller.token}",
        "--include-path-regex",
        caller.paths,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--phases",
        phases,
        "--workers",
        "1",
        "--request-timeout",
        str(max_response_s + 5),
        "--max-response-time",
        str(max_response_s),
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        "--no-shrink",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
        "--output-truncate",
        "false",
    ]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
    # In the report folder: schemathesis keeps a .schemathesis/ cache in its working directory.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=report_dir)
    result = FuzzResult(target.service, caller.name, exit_code=proc.returncode, output=proc.stdout + proc.stderr)
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = case.get("name", "")
            result.operations.append(name)
            for element in case:
                if element.tag not in ("failure", "error"):
                    continue
                text = (element.get("message", "") + "\n" + (element.text or "")).strip()
                cases = [c for c in _CASE.split(text) if _FINDING.search(c)] or [text]
                for one in cases:
                    bucket = result.lenient if _lenient_typing(one) else result.failures
                    bucket.setdefault(name, []).append(one)
    return result
