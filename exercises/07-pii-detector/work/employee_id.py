"""Exercise 7: find ACME employee ids (EMP-dddddd-c with a mod-11 check digit). See ../README.md."""

from __future__ import annotations

WEIGHTS = (7, 6, 5, 4, 3, 2)


def check_digit(six_digits: str) -> int:
    """The check digit of six digits: weighted sum mod 11, with 10 written as 0."""
    raise NotImplementedError("TODO: compute the check digit")


def is_valid(candidate: str) -> bool:
    """True when `candidate` is exactly one well-formed id with the right check digit."""
    raise NotImplementedError("TODO: validate format and check digit")


def find_employee_ids(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of every valid employee id in `text`, in order."""
    raise NotImplementedError("TODO: find candidates with a regex, keep the valid ones")
