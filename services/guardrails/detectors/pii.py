"""PII and secrets: patterns plus the checksums that tell a real identifier from a look-alike number.

Structured types only (names and addresses: detectors/ner.py). Every candidate is validated before it
becomes a finding: Luhn plus a known card scheme (or card words just before it) for cards, ISO 13616
mod-97 for IBANs (upper or lower case), SSA rules for US SSNs, the `ipaddress` module for IPs, digit
counts for phones (not when a street name follows: house and postal numbers), and a minimum entropy
for generic secrets.
"""

# ruff: noqa: E501  (regular expressions read better unbroken)
from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Match:
    """A validated identifier: entity type, span in the original text, score and why."""

    entity: str
    start: int
    end: int
    score: float
    reason: str


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a digit string (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Payment card schemes: (IIN prefix range, allowed lengths). A Luhn-valid number is a card when its prefix and
# length fit a scheme, or when the words just before it say "card" (then any 12-19 digits). 12-digit numbers
# exist only for Maestro; without context they must carry a Maestro prefix, so order and invoice numbers
# (10 % of random digit strings pass Luhn) are not taken for cards.
_MAESTRO = tuple(range(12, 20))
_CARD_SCHEMES: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (4, 4, (13, 16, 19)),  # Visa
    (51, 55, (16,)), (2221, 2720, (16,)),  # Mastercard
    (34, 34, (15,)), (37, 37, (15,)),  # American Express
    (6011, 6011, (16, 17, 18, 19)), (644, 649, (16, 17, 18, 19)), (65, 65, (16, 17, 18, 19)),  # Discover
    (300, 305, (14, 15, 16, 17, 18, 19)), (36, 36, (14, 15, 16, 17, 18, 19)), (38, 39, (14, 16, 17, 18, 19)),  # Diners
    (3528, 3589, (16, 17, 18, 19)),  # JCB
    (62, 62, (16, 17, 18, 19)),  # UnionPay
    (2200, 2204, (16, 17, 18, 19)),  # Mir
    # Maestro: 12-19 digits only on its own IINs (a broad 5x/6x prefix would take 12-digit phone numbers).
    (5018, 5018, _MAESTRO), (5020, 5020, _MAESTRO), (5038, 5038, _MAESTRO), (5893, 5893, _MAESTRO),
    (6304, 6304, _MAESTRO), (6759, 6759, _MAESTRO), (6761, 6763, _MAESTRO),
    (50, 50, tuple(range(13, 20))), (56, 58, tuple(range(13, 20))),
)  # fmt: skip
_CARD_CONTEXT = re.compile(
    r"(?i)(?:card|credit|debit|visa|master\s?card|amex|american express|maestro|discover|diners|jcb|unionpay|"
    r"\bcc\b|\bccn\b|\bpan\b|karte|carte|tarjeta|carta|cartão|payment|pay with|charged? to)[^\n\d]{0,30}$"
)


def card_scheme_ok(digits: str) -> bool:
    """The number's prefix and length fit a known card scheme."""
    for low, high, lengths in _CARD_SCHEMES:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def card_ok(raw: str, before: str = "", after: str = "") -> bool:
    """Luhn-valid, 12-19 digits, and either a known scheme or card words just before it."""
    digits = re.sub(r"\D", "", raw)
    if not 12 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    return card_scheme_ok(digits) or bool(_CARD_CONTEXT.search(before[-60:]))


# ISO 13616 lengths per country for the IBANs we validate strictly.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip


def iban_ok(raw: str) -> bool:
    """Mod-97 check (and the country's length when known); lower case only for a known country."""
    iban = re.sub(r"[\s-]", "", raw).upper()
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is None and not raw[:2].isupper():
        return False
    if expected is not None and len(iban) != expected:
        return False
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def ssn_ok(raw: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    digits = re.sub(r"\D", "", raw)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def ip_ok(raw: str) -> bool:
    """A syntactically valid IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        return False
    return True


_DATE_LIKE = re.compile(r"^\d{1,4}([./\-])\d{1,2}\1\d{1,4}(?:\s|$)")  # a date, perhaps followed by a time


def ipv6_ok(raw: str) -> bool:
    """A valid IPv6 address with at least three groups written out (so "::" or "a::b" in prose are not)."""
    return len(re.findall(r"[0-9a-fA-F]{1,4}", raw)) >= 3 and ip_ok(raw)


# A street name right after the digits ("1234 5678 Elm Street") or a unit word before them ("Suite 4461 23"):
# those digits are house, unit and postal numbers, not a phone.
_STREET_AFTER = re.compile(
    r"(?i)^,?\s+(?:[^\W\d_][\w'.-]*\s+){0,3}(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|"
    r"court|ct|way|place|pl|square|sq|terrace|parkway|highway|hwy)\b"
    r"|^\s+[A-ZÄÖÜ][\w'-]*(?:straße|strasse|gasse|weg|platz|straat|laan|gracht|allee)\b"
)
_UNIT_BEFORE = re.compile(
    r"(?i)(?:\b(?:apt|apartment|suite|ste|unit|flat|no|nr|box)\.?|#|"
    r"\w(?:straße|strasse|gasse|weg|platz|straat|laan|gracht|allee|gatan|vej|veien))\s*$"
)


def phone_ok(raw: str, before: str = "", after: str = "") -> bool:
    """7 to 15 digits (E.164) before any extension, not a date, not a run of one or two digits, not an address."""
    main = re.split(r"(?i)\s?(?:x|ext)", raw)[0]
    digits = re.sub(r"\D", "", main)
    if not (7 <= len(digits) <= 15 and len(set(digits)) > 2) or _DATE_LIKE.match(main.strip()):
        return False
    return not (_STREET_AFTER.match(after) or _UNIT_BEFORE.search(before))


def entropy_ok(raw: str, minimum: float = 3.0) -> bool:
    """Shannon entropy per character; random tokens score high, words and placeholders low."""
    if len(raw) < 16:
        return False
    counts = {ch: raw.count(ch) for ch in set(raw)}
    ent = -sum(c / len(raw) * math.log2(c / len(raw)) for c in counts.values())
    return ent >= minimum


@dataclass(frozen=True)
class Pattern:
    """A candidate pattern for one entity type with its validator."""

    entity: str
    category: str  # "pii" or "secret"
    regex: re.Pattern[str]
    validate: Callable[..., bool] | None
    score: float
    reason: str
    group: int = 0
    needs: str = ""  # a cheap pre-check (see _HINTS): most texts skip most patterns without scanning them
    context: bool = False  # the validator also reads up to 60 characters before and after the match


def _p(entity: str, category: str, regex: str, validate: Callable[..., bool] | None, score: float, reason: str,
       flags: int = 0, group: int = 0, needs: str = "", context: bool = False) -> Pattern:  # fmt: skip
    return Pattern(entity, category, re.compile(regex, flags), validate, score, reason, group, needs, context)


_HINTS: dict[str, Callable[[str], object]] = {
    "": lambda text: True,
    "digits": re.compile(r"\d\d").search,
    "@": lambda text: "@" in text,
    ":": lambda text: ":" in text,
    "iban": re.compile(r"[A-Za-z]{2}\d{2}").search,
    "key": re.compile(
        r"AKIA|ASIA|gh[pousr]_|github_pat_|sk-|[sr]k_(?:live|test)_|xox[abposr]-|AIza|glpat-|eyJ|-----BEGIN"
    ).search,
    "assign": re.compile(r"(?i)bearer|key|secret|token|passw").search,
}


PATTERNS: tuple[Pattern, ...] = (
    _p("PRIVATE_KEY", "secret", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
       None, 1.0, "PEM private key block", needs="key"),
    _p("API_KEY", "secret", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", None, 0.95, "AWS access key id", needs="key"),
    _p("API_KEY", "secret", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{50,}\b", None, 0.98, "GitHub token", needs="key"),
    _p("API_KEY", "secret", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}\b", None, 0.9, "OpenAI/Anthropic-style secret key", needs="key"),
    _p("API_KEY", "secret", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", None, 0.95, "Stripe secret key", needs="key"),
    _p("API_KEY", "secret", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b", None, 0.95, "Slack token", needs="key"),
    _p("API_KEY", "secret", r"\bAIza[0-9A-Za-z_\-]{35}\b", None, 0.95, "Google API key", needs="key"),
    _p("API_KEY", "secret", r"\bglpat-[A-Za-z0-9_\-]{20}\b", None, 0.95, "GitLab personal access token", needs="key"),
    _p("TOKEN", "secret", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", None, 0.95, "JSON Web Token", needs="key"),
    _p("TOKEN", "secret", r"(?i)\bbearer\s+([A-Za-z0-9._~+/\-]{20,}=*)", entropy_ok, 0.85, "bearer token in an authorization header", group=1, needs="assign"),
    _p("API_KEY", "secret",
       r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd|client[_-]?secret)\b[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9._~+/\-]{16,})",
       entropy_ok, 0.8, "high-entropy value assigned to a secret-looking name", group=1, needs="assign"),
    _p("EMAIL", "pii", r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.){1,8}[A-Za-z]{2,24}\b", None, 0.99, "e-mail address", needs="@"),
    _p("IBAN", "pii", r"\b[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]{4}){2,7}(?:[ \-]?[A-Za-z0-9]{1,4})?\b", iban_ok, 0.99, "IBAN with a valid mod-97 checksum", needs="iban"),
    _p("CREDIT_CARD", "pii", r"(?<![\d\-])(?:\d[ \-]?){11,18}\d(?![\d\-])", card_ok, 0.95,
       "payment card number (Luhn-valid, known scheme or card context)", needs="digits", context=True),
    _p("US_SSN", "pii", r"(?<![\d\-])\d{3}([\- ])\d{2}\1\d{4}(?![\d\-])", ssn_ok, 0.85, "US social security number (SSA-valid)", needs="digits"),
    _p("IP_ADDRESS", "pii", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)", ip_ok, 0.9, "IPv4 address", needs="digits"),
    _p("IP_ADDRESS", "pii", r"(?<![:\w.])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![:\w])", ipv6_ok, 0.85, "IPv6 address", needs=":"),
    _p("PHONE", "pii",
       r"(?<![\w+\-])(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}(?:[\s.\-]\d{2,4}){1,4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w\-])"
       r"|(?<![\w+])\+\d{1,3}(?:[\s.\-]\d{1,10}){1,4}(?![\w\-])|(?<![\w+])\+\d{7,15}\b|(?<!\w)00\d{9,14}\b|(?<![\w\-])\d{10}(?![\w\-])",
       phone_ok, 0.75, "phone number", needs="digits", context=True),
)  # fmt: skip


def _overlaps(a: Match, b: Match) -> bool:
    return a.start < b.end and b.start < a.end


def find_identifiers(text: str, entities: set[str] | None = None) -> list[Match]:
    """All validated PII and secret matches, earlier patterns winning overlaps (secrets before PII)."""
    found: list[Match] = []
    hints: dict[str, bool] = {}
    for pattern in PATTERNS:
        if entities is not None and pattern.entity not in entities:
            continue
        if pattern.needs not in hints:
            hints[pattern.needs] = bool(_HINTS[pattern.needs](text))
        if not hints[pattern.needs]:
            continue
        for m in pattern.regex.finditer(text):
            value = m.group(pattern.group)
            start, end = m.span(pattern.group)
            if pattern.validate is not None:
                if pattern.context:
                    ok = pattern.validate(value, text[max(0, start - 60) : start], text[end : end + 60])
                else:
                    ok = pattern.validate(value)
                if not ok:
                    continue
            cand = Match(pattern.entity, start, end, pattern.score, pattern.reason)
            if not any(_overlaps(cand, f) for f in found):
                found.append(cand)
    return sorted(found, key=lambda f: f.start)


SECRET_ENTITIES = frozenset({"PRIVATE_KEY", "API_KEY", "TOKEN"})
PII_ENTITIES = frozenset({"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS"})
