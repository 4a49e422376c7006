"""Output-only detectors: system-prompt leakage (canaries), JSON-schema validation, RAG groundedness."""

from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from services.guardrails.detectors.base import CheckInput, DetectorError, Finding
from services.guardrails.detectors.content import canonical_view
from services.guardrails.detectors.normalize import unicode_view


class _Embedder(Protocol):
    def embed(self, text: str) -> np.ndarray: ...


class _Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_WORD = re.compile(r"[^\W_]{3,}")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "was",
        "were",
        "with",
        "that",
        "this",
        "from",
        "have",
        "has",
        "had",
        "not",
        "but",
        "its",
        "it's",
        "they",
        "their",
        "there",
        "which",
        "what",
        "when",
        "where",
        "who",
        "will",
        "would",
        "can",
        "could",
        "should",
        "into",
        "than",
        "then",
        "them",
        "these",
        "those",
        "also",
        "such",
        "our",
        "your",
        "you",
    ]
)


class CanaryDetector:
    """Canary strings planted in the system prompt that must never come back in an answer."""

    name = "canary"

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """Finds each canary (request or policy) in the output, case- and spacing-insensitively."""
        view = canonical_view(inp)
        squeezed = re.sub(r"\s+", " ", view.text)
        findings = []
        for canary in [*(inp.canaries or []), *(config.get("canaries") or [])]:
            needle = re.sub(r"\s+", " ", unicode_view(canary).text.strip())
            if len(needle) < 4:
                continue
            pos = view.text.find(needle)
            if pos >= 0:
                start, end = view.span(pos, pos + len(needle))
            elif needle in squeezed:
                start, end = 0, len(inp.text)
            else:
                continue
            findings.append(
                Finding(
                    self.name,
                    "system_prompt_leak",
                    start,
                    end,
                    1.0,
                    "output contains a canary string from the system prompt",
                )
            )
        return findings


def _parse_json(text: str) -> Any:
    fenced = _FENCE.match(text)
    return orjson.loads(fenced.group(1) if fenced else text)  # orjson refuses nesting deeper than 1024


class JsonSchemaDetector:
    """Structured output: the answer must parse as JSON and validate against the caller's schema."""

    name = "json_schema"

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """No findings when valid; one per violation (at most 10) otherwise."""
        if inp.json_schema is None:
            return []
        try:
            Draft202012Validator.check_schema(inp.json_schema)
        except (SchemaError, RecursionError) as exc:
            raise DetectorError(f"the json_schema is not a valid JSON Schema: {getattr(exc, 'message', exc)}") from exc
        try:
            document = _parse_json(inp.text)
        except orjson.JSONDecodeError as exc:
            return [Finding(self.name, "invalid_json", 0, len(inp.text), 1.0, f"output is not valid JSON: {exc}")]
        try:
            errors = list(Draft202012Validator(inp.json_schema).iter_errors(document))[:10]
        except RecursionError as exc:
            raise DetectorError("schema validation recursed too deeply") from exc
        return [
            Finding(self.name, "schema_violation", 0, len(inp.text), 1.0,
                    f"at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}")
            for e in errors
        ]  # fmt: skip


class StaticSentenceEncoder:
    """Sentence vectors from the static MiniLM token table: a lookup and a mean, no transformer, no torch."""

    def __init__(self, embedder: _Embedder) -> None:
        self.embedder = embedder

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised rows, one per text."""
        return np.stack([self.embedder.embed(t) for t in texts]) if texts else np.zeros((0, 1), dtype=np.float32)


class GroundednessDetector:
    """RAG answers: every sentence should be supported by the supplied context.

    Support = the best cosine similarity of the sentence to any context *sentence* (static MiniLM vectors:
    comparing sentence to sentence keeps a bag of token vectors sharp, where whole passages blur), or most
    of its content words appearing in the context. Numbers must appear in the context too: an invented
    figure is the most common and most harmful unsupported claim. Cost: tokenising answer and context once
    (about 2 ms for 1k + 4k characters), so the 50 ms budget of an output check holds.
    """

    name = "groundedness"

    def __init__(self, encoder: _Encoder) -> None:
        self.encoder = encoder

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """One finding per unsupported sentence; nothing when no context was supplied."""
        passages = [p for p in (inp.context or []) if p.strip()][: int(config.get("max_passages", 32))]
        if not passages or not inp.text.strip():
            return []
        threshold = float(config.get("threshold", 0.55))
        min_overlap = float(config.get("min_overlap", 0.6))
        sentences = [
            (m.start() + len(m.group(0)) - len(m.group(0).lstrip()), m.end(), m.group(0).strip())
            for m in _SENTENCE.finditer(inp.text)
        ]
        sentences = [s for s in sentences if len(_WORD.findall(s[2])) >= 3][: int(config.get("max_sentences", 64))]
        if not sentences:
            return []
        context_text = unicode_view(" ".join(passages)).text
        context_words = set(_WORD.findall(context_text))
        context_numbers = set(_NUMBER.findall(context_text))
        units = [m.group(0).strip() for p in passages for m in _SENTENCE.finditer(p) if m.group(0).strip()]
        vectors = self.encoder.encode([s[2] for s in sentences] + (units or passages))
        sims = vectors[: len(sentences)] @ vectors[len(sentences) :].T
        findings = []
        for (start, end, sentence), row in zip(sentences, sims, strict=True):
            best = float(np.max(row))
            lowered = unicode_view(sentence).text
            words = [w for w in _WORD.findall(lowered) if w not in _STOP]
            overlap = sum(w in context_words for w in words) / len(words) if words else 1.0
            missing_numbers = [n for n in _NUMBER.findall(lowered) if n not in context_numbers]
            if missing_numbers:
                reason = f"numbers {', '.join(missing_numbers[:3])} do not appear in the context"
            elif best < threshold and overlap < min_overlap:
                reason = "not supported by the context "
                reason += f"(similarity {best:.2f} < {threshold:.2f}, word overlap {overlap:.0%})"
            else:
                continue
            findings.append(Finding(self.name, "ungrounded", start, end, min(1.0, max(0.0, 1.0 - best)), reason))
        return findings
