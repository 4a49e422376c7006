"""docs/operations.md against the fault tests and the error catalogue: every fault test is described there, every
test it names exists, and every `<status> \\`<code>\\`` it quotes is a catalogued code with that status."""

from __future__ import annotations

import re
from pathlib import Path

from llmops_common.error_codes import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()


def test_every_fault_test_is_in_the_doc_and_every_named_test_exists() -> None:
    tests = {p.name for p in (ROOT / "tests" / "reliability").glob("test_*.py")} - {Path(__file__).name}
    named = set(re.findall(r"`(test_[a-z_]+\.py)`", DOC))
    assert tests - named == set(), "fault tests not described in docs/operations.md"
    assert named - tests == set(), "docs/operations.md names tests that do not exist"
    assert "`tests/fuzz`" in DOC and (ROOT / "tests" / "fuzz" / "test_fuzz.py").exists()


def test_quoted_error_codes_are_catalogued_with_their_status() -> None:
    quoted = re.findall(r"\b([1-5]\d\d) `([a-z_]+)`", DOC)
    assert len(quoted) >= 6
    wrong = [(s, c) for s, c in quoted if c not in CATALOGUE or int(s) not in CATALOGUE[c].statuses]
    assert not wrong, f"docs/operations.md quotes codes the catalogue does not have with that status: {wrong}"
