"""Checks only an answer needs: leaked canaries, JSON that must match a schema, sentences the context
does not support."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from examples.minimal_guardrails.findings import Finding

JSON_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)
# A sentence ends at . ! or ? (but not the dot inside "3.5").
SENTENCE = re.compile(r"(?:[^.!?]|\.(?=\d))+[.!?]*")
WORD = re.compile(r"[^\W\d_]{3,}")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
STOPWORDS = {
    "the", "and", "was", "were", "are", "its", "his", "her", "their", "this", "that", "these", "those", "with",
    "from", "for", "into", "onto", "over", "under", "about", "also", "has", "have", "had", "been", "being", "which",
    "who", "whom", "what", "when", "where", "why", "how", "than", "then", "there", "here", "they", "them",
}  # fmt: skip
MIN_SUPPORT = 0.5  # share of a sentence's content words that must appear in the context


def detect_canaries(text: str, canaries: list[str]) -> list[Finding]:
    """A canary (a marker planted in the system prompt) in the answer means the prompt leaked; matched
    ignoring case and spacing, because models often re-space what they copy."""
    findings = []
    for canary in canaries:
        letters = [re.escape(c) for c in canary if not c.isspace()]
        if not letters:
            continue
        m = re.search(r"\s*".join(letters), text, re.I)
        if m:
            findings.append(Finding("canary", "canary_leak", m.start(), m.end(), 1.0, "a canary of the prompt leaked"))
    return findings


def detect_schema_violation(text: str, validator: Draft202012Validator) -> list[Finding]:
    """The answer (optionally inside a ```json fence) must parse and validate against the caller's schema."""
    fenced = JSON_FENCE.match(text)
    try:
        value: Any = json.loads(fenced.group(1) if fenced else text)
    except ValueError as exc:
        return [Finding("json_schema", "schema_violation", 0, len(text), 1.0, f"the answer is not JSON: {exc}")]
    except RecursionError:
        return [Finding("json_schema", "schema_violation", 0, len(text), 1.0, "the answer's JSON is nested too deeply")]
    try:
        error = next(iter(validator.iter_errors(value)), None)
    except (RecursionError, Unresolvable) as exc:
        reason = f"the schema could not be applied: {type(exc).__name__}"
        return [Finding("json_schema", "schema_violation", 0, len(text), 1.0, reason)]
    if error is None:
        return []
    return [Finding("json_schema", "schema_violation", 0, len(text), 1.0, f"schema: {error.message[:200]}")]


def detect_ungrounded(text: str, context: list[str]) -> list[Finding]:
    """Sentences whose numbers are not in the context, or most of whose content words are not: a cheap
    stand-in for an embedding model, good enough to catch invented facts."""
    joined = " ".join(context).lower()
    context_words = set(WORD.findall(joined))
    context_numbers = set(NUMBER.findall(joined))
    findings = []
    for m in SENTENCE.finditer(text):
        sentence = m.group().lower()
        words = [w for w in WORD.findall(sentence) if w not in STOPWORDS]
        missing_numbers = [n for n in NUMBER.findall(sentence) if n not in context_numbers]
        support = sum(w in context_words for w in words) / len(words) if words else 1.0
        if missing_numbers or support < MIN_SUPPORT:
            start = m.start() + len(m.group()) - len(m.group().lstrip())
            end = m.end() - (len(m.group()) - len(m.group().rstrip()))
            why = f"numbers {missing_numbers} not in the context" if missing_numbers else "not supported by the context"
            findings.append(Finding("groundedness", "ungrounded", start, end, round(1 - support, 2), why))
    return findings
