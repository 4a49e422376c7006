"""PII and secrets: patterns for the shape, checksums for the truth.

A 16-digit number is not a card number unless its Luhn checksum holds, and "DE00 ..." is not an IBAN
unless its mod-97 check does; checking them keeps order numbers and references from being redacted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from examples.minimal_guardrails.findings import Finding, drop_overlaps

PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S)
API_KEYS = re.compile(r"\b(?:AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,})\b")
# Each pattern starts where a token starts (the look-behind), so a long run of letters costs one pass, not n².
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d\b")
SSN = re.compile(r"\b(\d{3})-(\d{2})-(\d{4})\b")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b"  # (415) 555-0199, +1 415-555-0199
    r"|(?<![\w+])\+\d{1,3}(?: ?\d{2,4}){2,4}\b"  # +44 20 7946 0958
)


def luhn_ok(number: str) -> bool:
    """The payment-card checksum."""
    digits = [int(d) for d in number if d.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return 13 <= len(digits) <= 19 and total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, remainder mod 97 is 1."""
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_ok(match: re.Match[str]) -> bool:
    """SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000."""
    area, group, serial = match.groups()
    return area not in {"000", "666"} and not area.startswith("9") and group != "00" and serial != "0000"


# (placeholder, category, pattern, validator) in the order they claim text: most specific first.
Validator = Callable[[re.Match[str]], bool]
DETECTORS: list[tuple[str, str, re.Pattern[str], Validator]] = [
    ("PRIVATE_KEY", "private_key", PRIVATE_KEY, lambda m: True),
    ("API_KEY", "secret", API_KEYS, lambda m: True),
    ("EMAIL", "pii", EMAIL, lambda m: True),
    ("IBAN", "pii", IBAN, lambda m: iban_ok(m.group())),
    ("CARD", "pii", CARD, lambda m: luhn_ok(m.group())),
    ("SSN", "pii", SSN, ssn_ok),
    ("PHONE", "pii", PHONE, lambda m: True),
]


def detect_sensitive(text: str) -> list[Finding]:
    """Private keys, API keys, e-mail addresses, IBANs, card numbers, US SSNs and phone numbers."""
    findings = []
    for placeholder, category, pattern, valid in DETECTORS:
        detector = "secrets" if category in {"secret", "private_key"} else "pii"
        for m in pattern.finditer(text):
            if valid(m):
                reason = f"{placeholder.lower().replace('_', ' ')} found"
                findings.append(Finding(detector, category, m.start(), m.end(), 1.0, reason, placeholder=placeholder))
    return drop_overlaps(findings)
