"""Prompt-injection check: normalise away the usual disguises, then match a few multilingual rules.

Attackers hide "ignore all previous instructions" behind zero-width characters, look-alike letters from
other alphabets, s p a c e d letters or base64. Rather than a rule per disguise, we undo the disguises
once and run the same rules on every view of the text. Each view keeps, for every character, its offset
in the original text, so a finding points at what the caller actually sent.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

from examples.minimal_guardrails.findings import Finding

# Cyrillic and Greek letters that look like Latin ones (the ones attackers use; not a full confusables table).
HOMOGLYPHS = dict(
    zip(
        "аеорсухіјѕԁһӏԛԝвкмнтАВЕКМНОРСТУХІЈЅαεικνορτυχΑΒΕΗΙΚΜΝΟΡΤΥΧ",
        "aeopcyxijsdhlqwbkmhtABEKMHOPCTYXIJSaeiknoptuxABEHIKMNOPTYX",
        strict=True,
    )
)
SPACED_LETTERS = re.compile(r"\b(?:[a-z] ){2,}[a-z]\b")  # "i g n o r e"
BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{20,}={0,2}")

# The rules, on lower-cased normalised text, in English, German, French, Spanish, Italian and Portuguese.
OVERRIDE = re.compile(
    r"\b(?:ignor\w*|disregard|forget|skip|override|bypass|vergiss|missachte\w*|oublie\w*|olvida\w*|dimentica\w*"
    r"|esque[cç]a)\b(?:\s+\S+){0,3}?\s+(?:instructions?|rules|guidelines|directions|prompts?|anweisungen|regeln"
    r"|vorgaben|consignes|r[eè]gles|instrucciones|reglas|istruzioni|regole|instru[cç][oõ]es|regras)\b"
)
# Without one of these words the override rule is too eager: "how do I ignore whitespace rules?" is benign.
QUALIFIER = re.compile(
    r"\b(?:all|any|every|previous|prior|above|earlier|preceding|your|system|alle[ns]?|vorherigen|bisherigen"
    r"|obigen|deine[n]?|toutes|tous|pr[ée]c[ée]dentes?|vos|tes|todas|todos|anteriores|previas|tus|tutte"
    r"|precedenti|tue)\b"
)
EXTRACTION = re.compile(
    r"\b(?:reveal|show|print|display|repeat|output|leak|tell|give|zeige?|gib|montre\w*|r[ée]v[èe]le\w*|affiche\w*"
    r"|muestra\w*|revela\w*|mostra\w*|dimmi)\b(?:\s+\S+){0,4}?\s+(?:your|the|deinen?|ton|votre|tu|su|il\s+tuo)\s+"
    r"(?:(?:hidden|secret|initial|original|system)\s*-?\s*(?:prompt|instructions)|systemprompt"
    r"|prompt\s+syst[eè]me|prompt\s+del\s+sistema|instrucciones\s+del\s+sistema)\b"
)
ROLE_HIJACK = re.compile(
    r"\b(?:you\s+are\s+now|from\s+now\s+on\s+you\s+are|act\s+as|pretend\s+(?:to\s+be|you\s+are)|enable|enter)\b"
    r"(?:\s+\S+){0,3}?\s+(?:dan|developer\s+mode|jailbr(?:oken|eak)|unfiltered|uncensored"
    r"|an?\s+ai\s+without\s+(?:any\s+)?(?:rules|restrictions|limits))\b|\bdo\s+anything\s+now\b"
)
RULES = [
    ("override_instructions", OVERRIDE, "asks the model to ignore the instructions it was given"),
    ("prompt_extraction", EXTRACTION, "asks the model to reveal its system prompt"),
    ("role_hijack", ROLE_HIJACK, "asks the model to become an unrestricted persona"),
]


@dataclass
class View:
    """A rewritten text plus, for each of its characters, the offset of the original character."""

    text: str
    origin: list[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """A span of this view as a span of the original text."""
        return self.origin[start], self.origin[end - 1] + 1


def normalise(text: str) -> View:
    """NFKC (fullwidth and styled letters), no invisible format characters, homoglyphs folded, lower case."""
    chars: list[str] = []
    origin: list[int] = []
    for offset, char in enumerate(text):
        if unicodedata.category(char) == "Cf":  # zero-width spaces and joiners, bidi marks
            continue
        for out in unicodedata.normalize("NFKC", char):
            for lowered in HOMOGLYPHS.get(out, out).lower():
                chars.append(lowered)
                origin.append(offset)
    return View("".join(chars), origin)


def despace(view: View) -> View:
    """Join letters spelled out one by one ("i g n o r e" -> "ignore")."""
    dropped = {i for m in SPACED_LETTERS.finditer(view.text) for i in range(m.start(), m.end()) if view.text[i] == " "}
    keep = [i for i in range(len(view.text)) if i not in dropped]
    return View("".join(view.text[i] for i in keep), [view.origin[i] for i in keep])


def _matches(view: View) -> list[tuple[str, str, int, int]]:
    """(rule, reason, start, end) of every rule that matches, as spans of the original text."""
    found = []
    for name, pattern, reason in RULES:
        for m in pattern.finditer(view.text):
            # The qualifier may follow the noun ("instructions précédentes"): look a few characters further.
            if name == "override_instructions" and not QUALIFIER.search(view.text, m.start(), m.end() + 25):
                continue
            found.append((name, reason, *view.span(m.start(), m.end())))
            break  # one finding per rule and view is enough to explain the decision
    return found


def _decoded_payloads(text: str) -> list[tuple[str, int, int]]:
    """Readable text hidden in base64 runs, with the run's span."""
    payloads = []
    for m in BASE64_RUN.finditer(text):
        run = m.group()
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue  # not base64, or binary data (an image, a key): nothing a model would read as instructions
        if decoded.isprintable():
            payloads.append((decoded, m.start(), m.end()))
    return payloads


def detect_injection(text: str) -> list[Finding]:
    """Findings for instruction overrides, system-prompt extraction and persona hijacks, however disguised."""
    plain = normalise(text)
    seen: dict[str, Finding] = {}
    for view in (plain, despace(plain)):
        for name, reason, start, end in _matches(view):
            seen.setdefault(name, Finding("injection", "prompt_injection", start, end, 0.9, f"rule {name}: {reason}"))
    for payload, start, end in _decoded_payloads(text):
        for name, reason, _, _ in _matches(normalise(payload)):
            key = f"base64:{name}"
            reason = f"rule {name} in base64-encoded text: {reason}"
            seen.setdefault(key, Finding("injection", "prompt_injection", start, end, 0.9, reason))
    return list(seen.values())
