"""The tests `make check-exercise N=7` runs against your work/employee_id.py (EXERCISE_MODULE points at it)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def _load():
    path = Path(os.environ.get("EXERCISE_MODULE", Path(__file__).parent / "work" / "employee_id.py"))
    spec = importlib.util.spec_from_file_location("learner_employee_id", path)
    assert spec and spec.loader, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


m = _load()

# (six digits, check digit): includes a weighted sum whose remainder is 10 (written 0).
KNOWN = [("482913", 0), ("100000", 7), ("999999", 1), ("123456", 0), ("314159", 7), ("271828", 5), ("000001", 2)]


@pytest.mark.parametrize(("digits", "expected"), KNOWN)
def test_check_digit(digits, expected):
    assert m.check_digit(digits) == expected


@pytest.mark.parametrize("good", [f"EMP-{d}-{c}" for d, c in KNOWN])
def test_valid_ids(good):
    assert m.is_valid(good) is True


@pytest.mark.parametrize(
    "bad",
    ["EMP-482913-1", "EMP-48291-0", "EMP-4829130-0", "emp-482913-0", "EMP 482913 0", "EMP-48a913-0", "", "EMP--0"],
)
def test_invalid_ids(bad):
    assert m.is_valid(bad) is False


def test_spans_in_text():
    text = "Ticket from EMP-482913-0 (cc EMP-100000-7). Typo: EMP-100000-8."
    spans = m.find_employee_ids(text)
    assert [text[s:e] for s, e in spans] == ["EMP-482913-0", "EMP-100000-7"]
    assert spans == sorted(spans)


def test_glued_ids_are_not_ids():
    for text in ["XEMP-482913-0", "EMP-4829131-0", "EMP-482913-01", "idEMP-482913-0", "EMP-482913-0x"]:
        assert m.find_employee_ids(text) == [], text


def test_punctuation_and_line_edges():
    text = 'EMP-999999-1.\n(EMP-123456-0)\n"EMP-314159-7",'
    assert [text[s:e] for s, e in m.find_employee_ids(text)] == ["EMP-999999-1", "EMP-123456-0", "EMP-314159-7"]


def test_look_alikes_are_ignored():
    text = "Order 482913-0, invoice INV-482913-0, phone 482-913-0000, EMP-000000-0 is the test account."
    assert [text[s:e] for s, e in m.find_employee_ids(text)] == ["EMP-000000-0"]


def test_no_ids_in_plain_text():
    assert m.find_employee_ids("Nothing to see here, just numbers 1234567 and EMP.") == []
