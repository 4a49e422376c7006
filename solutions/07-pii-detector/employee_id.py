"""Exercise 7 (reference solution): find ACME employee ids (EMP-dddddd-c with a mod-11 check digit)."""

from __future__ import annotations

import re

WEIGHTS = (7, 6, 5, 4, 3, 2)
# Look-arounds instead of \b: "_" and letters/digits glued to the id make it something else.
_CANDIDATE = re.compile(r"(?<![A-Za-z0-9_-])EMP-(\d{6})-(\d)(?![A-Za-z0-9_]|-\d)")
_EXACT = re.compile(r"EMP-(\d{6})-(\d)")


def check_digit(six_digits: str) -> int:
    """The check digit of six digits: weighted sum mod 11, with 10 written as 0."""
    if len(six_digits) != 6 or not six_digits.isdigit():
        raise ValueError("need exactly six digits")
    return sum(w * int(d) for w, d in zip(WEIGHTS, six_digits, strict=True)) % 11 % 10


def is_valid(candidate: str) -> bool:
    """True when `candidate` is exactly one well-formed id with the right check digit."""
    m = _EXACT.fullmatch(candidate)
    return bool(m) and check_digit(m.group(1)) == int(m.group(2))


def find_employee_ids(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of every valid employee id in `text`, in order."""
    return [m.span() for m in _CANDIDATE.finditer(text) if check_digit(m.group(1)) == int(m.group(2))]
