"""Policy-driven content detectors: PII/secrets, deny-lists, topics and the length/token limit."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

from services.guardrails.detectors.base import CheckInput, Finding
from services.guardrails.detectors.embeddings import StaticEmbedder
from services.guardrails.detectors.normalize import View, unicode_view
from services.guardrails.detectors.pii import PII_ENTITIES, SECRET_ENTITIES, find_identifiers


def canonical_view(inp: CheckInput) -> View:
    """The unicode-normalised view of the text, computed once per check and shared by detectors."""
    view = inp.cache.get("unicode_view")
    if view is None:
        view = unicode_view(inp.text)
        inp.cache["unicode_view"] = view
    return view


class PIIDetector:
    """Structured PII (or secrets, with `secrets=True`) with checksum validation; redactable findings."""

    def __init__(self, name: str, entities: frozenset[str], category: str) -> None:
        self.name = name
        self.default_entities = entities
        self.category = category

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """Findings for the configured entity types (config `entities`, default all of this detector's)."""
        wanted = set(config.get("entities") or self.default_entities) & set(self.default_entities)
        return [
            Finding(self.name, self.category, m.start, m.end, m.score, m.reason, entity=m.entity)
            for m in find_identifiers(inp.text, wanted)
        ]


def pii_detector() -> PIIDetector:
    """E-mail, phone, card, IBAN, SSN, IP."""
    return PIIDetector("pii", PII_ENTITIES, "pii")


def secrets_detector() -> PIIDetector:
    """API keys, tokens, private keys."""
    return PIIDetector("secrets", SECRET_ENTITIES, "secret")


@lru_cache(maxsize=256)
def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation of whole-word terms, normalised like the text (cached per policy)."""
    cleaned = [re.escape(unicode_view(t).text.strip()) for t in terms if t.strip()]
    if not cleaned:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(sorted(cleaned, key=len, reverse=True)) + r")(?!\w)")


class DenyListDetector:
    """Whole-word terms and regular expressions the policy forbids, matched on the normalised text."""

    name = "denylist"

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """One finding per matched term occurrence (at most 20)."""
        if not config.get("terms") and not config.get("patterns"):
            return []
        view = canonical_view(inp)
        findings: list[Finding] = []
        pattern = _term_pattern(tuple(config.get("terms") or ()))
        if pattern is not None:
            for m in pattern.finditer(view.text):
                start, end = view.span(m.start(), m.end())
                findings.append(Finding(self.name, "denylist", start, end, 1.0, f"deny-listed term '{m.group(0)}'"))
        for raw in config.get("patterns") or ():
            for m in re.finditer(raw, view.text):
                start, end = view.span(m.start(), m.end())
                findings.append(Finding(self.name, "denylist", start, end, 1.0, f"matches deny-listed pattern /{raw}/"))
        return findings[:20]


class TopicDetector:
    """Topics the policy denies: keywords, and similarity of the text to the topic's example phrases."""

    name = "topics"

    def __init__(self, embedder: StaticEmbedder) -> None:
        self.embedder = embedder
        self._centroids: dict[tuple[str, ...], np.ndarray] = {}

    def _centroid(self, examples: tuple[str, ...]) -> np.ndarray:
        if examples not in self._centroids:
            vecs = np.stack([self.embedder.embed(unicode_view(e).text) for e in examples])
            centroid = vecs.mean(axis=0)
            self._centroids[examples] = centroid / (np.linalg.norm(centroid) or 1.0)
        return self._centroids[examples]

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """A finding per denied topic the text is about (keyword hit, or cosine >= topic threshold)."""
        topics: dict[str, dict[str, Any]] = config.get("denied") or {}
        if not topics:
            return []
        view = canonical_view(inp)
        findings: list[Finding] = []
        windows = None
        for topic, spec in topics.items():
            pattern = _term_pattern(tuple(spec.get("keywords") or ()))
            m = pattern.search(view.text) if pattern else None
            if m:
                start, end = view.span(m.start(), m.end())
                findings.append(
                    Finding(
                        self.name, f"topic:{topic}", start, end, 1.0, f"mentions '{m.group(0)}' (denied topic {topic})"
                    )
                )
                continue
            examples = tuple(spec.get("examples") or ())
            if not examples or not view.text.strip():
                continue
            if windows is None:
                windows = self.embedder.embed_windows(view.text)
            sim = float((windows @ self._centroid(examples)).max())
            threshold = float(spec.get("threshold", 0.8))
            if sim >= threshold:
                findings.append(
                    Finding(self.name, f"topic:{topic}", 0, len(inp.text), sim,
                            f"close to denied topic {topic} (similarity {sim:.2f} >= {threshold:.2f})")
                )  # fmt: skip
        return findings


class LengthDetector:
    """Characters and model tokens over the policy's limit."""

    name = "length"

    def __init__(self, embedder: StaticEmbedder) -> None:
        self.embedder = embedder

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """A finding when `max_chars` or `max_tokens` is exceeded."""
        max_chars = config.get("max_chars")
        if max_chars is not None and len(inp.text) > int(max_chars):
            reason = f"{len(inp.text)} characters exceed the limit of {max_chars}"
            return [Finding(self.name, "length", int(max_chars), len(inp.text), 1.0, reason)]
        max_tokens = config.get("max_tokens")
        if max_tokens is not None and len(inp.text) > int(max_tokens):  # a token covers at least one character
            count = len(self.embedder.token_ids(inp.text))
            if count > int(max_tokens):
                reason = f"{count} tokens exceed the limit of {max_tokens}"
                return [Finding(self.name, "length", 0, len(inp.text), 1.0, reason)]
        return []
