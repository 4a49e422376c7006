"""Regex redaction of structured PII and secrets before examples leave the store as a dataset.

It catches what has a shape (emails, phones, cards, SSNs, IPs, IBANs, API keys); names and addresses need
NER and are the guardrails service's job. Order matters: longer, more specific shapes go first.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("SECRET", re.compile(r"\b(?:sk|pk|rk|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{16,}\b|\bAKIA[0-9A-Z]{16}\b")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")),
    ("CREDIT_CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("IP_ADDRESS", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    (
        "PHONE",
        re.compile(
            r"(?<!\w)(?<!\d\.)(?:\+?\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}"
            r"(?:[ .-]\d{2,4}){1,4}(?:\s?x\d{1,6})?(?!\w|\.\d)"
        ),
    ),
]


def _looks_like_phone(match: str) -> bool:
    digits = sum(c.isdigit() for c in match.split("x")[0])
    return 7 <= digits <= 15


def redact(text: str) -> tuple[str, int]:
    """Replace PII with [TYPE] placeholders; returns the text and the number of replacements."""
    count = 0

    def sub(kind: str) -> Callable[[re.Match[str]], str]:
        def repl(m: re.Match[str]) -> str:
            nonlocal count
            if kind == "PHONE" and not _looks_like_phone(m.group(0)):
                return m.group(0)
            count += 1
            return f"[{kind}]"

        return repl

    for kind, pattern in _PATTERNS:
        text = pattern.sub(sub(kind), text)
    return text, count
