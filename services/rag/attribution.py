"""Citation attribution: which retrieved passage supports which sentence of a generated answer.

A 135M model does not learn to cite, so the platform does it after generation: the answer is split into
sentences, each sentence is scored against every passage the prompt numbered, and the passages whose
support reaches the calibrated threshold get `[n]` markers at the end of the sentence. The support of a
sentence for a passage mixes two signals, because each misses what the other sees:

- **cosine**: the best cosine (the service's own MiniLM embedder) between the sentence and any sentence of the
  passage — a paraphrase scores high although few words are shared;
- **lexical**: the share of the sentence's content words (the BM25 tokenizer: lower-cased, stop words out,
  lightly stemmed) that occur in the passage — a copied fact with a rare name scores high even when the
  embedding of a short sentence is vague.

`support = weight * cosine + (1 - weight) * lexical`, supported when `support >= threshold`. The weight and
threshold defaults (settings `attribution_weight`, `attribution_threshold`) were fitted on the committed dev set
by `bench/rag_trust.py` (written to bench/results/rag_trust.{json,md}). Similarity is not entailment: a sentence
that contradicts a passage with the same words ("Normandy is in Germany") still scores as supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.rag.sparse import tokenize

_MARKER = re.compile(r"\s*\[\d{1,2}\]")
# A sentence ends at . ! ? (then whitespace) or at a line break (list items, headings).
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*[ \t]+|\n+")
_TRAILING = re.compile(r"[.!?:;,\"')\]\s]*$")
MIN_CLAIM_TOKENS = 2  # "Yes." or "In short:" states nothing to attribute


class Encoder(Protocol):
    """What attribution needs of the embedder."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def split_sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, separator after it) pairs; joining them gives the text back."""
    out: list[tuple[str, str]] = []
    pos = 0
    for match in _BOUNDARY.finditer(text):
        out.append((text[pos : match.start()], match.group(0)))
        pos = match.end()
    if pos < len(text):
        out.append((text[pos:], ""))
    return [(s, sep) for s, sep in out if s.strip()] or ([(text, "")] if text.strip() else [])


def with_markers(sentence: str, numbers: Sequence[int]) -> str:
    """`Normandy is in France.` + [1, 3] -> `Normandy is in France [1][3].` (markers before the end punctuation)."""
    if not numbers:
        return sentence
    tail = _TRAILING.search(sentence)
    cut = tail.start() if tail else len(sentence)
    return sentence[:cut] + " " + "".join(f"[{n}]" for n in numbers) + sentence[cut:]


@dataclass
class SentenceSupport:
    """One answer sentence and the passages that support it."""

    index: int
    text: str
    claim: bool  # False: too short to state anything; not counted in groundedness
    support: float  # best support over the passages (0 when not a claim)
    citations: list[int]  # passage numbers whose support reached the threshold, best first
    scores: dict[int, dict[str, float]] = field(default_factory=dict)  # number -> support, cosine, lexical

    @property
    def supported(self) -> bool:
        """A claim with at least one supporting passage."""
        return bool(self.citations)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (passage scores only for the cited and the best passage, to keep answers small)."""
        return {
            "index": self.index,
            "text": self.text,
            "claim": self.claim,
            "supported": self.supported if self.claim else None,
            "support": round(self.support, 4),
            "citations": self.citations,
            "scores": [{"number": n, **{k: round(v, 4) for k, v in s.items()}} for n, s in self.scores.items()],
        }


@dataclass
class Attribution:
    """The attributed answer, its sentences and the groundedness they add up to."""

    answer: str
    sentences: list[SentenceSupport]
    threshold: float
    weight: float

    @property
    def unsupported(self) -> list[int]:
        """Indexes of claims no passage supports."""
        return [s.index for s in self.sentences if s.claim and not s.supported]

    @property
    def groundedness(self) -> float | None:
        """Share of claims supported by a passage; None when the answer makes no claim."""
        claims = [s for s in self.sentences if s.claim]
        return round(sum(s.supported for s in claims) / len(claims), 4) if claims else None

    def meta(self) -> dict[str, Any]:
        """What the answer carries under `attribution` (plus `groundedness` at the top level)."""
        return {
            "method": f"embedding+lexical(weight={self.weight},threshold={self.threshold})",
            "sentences": [s.as_dict() for s in self.sentences],
            "unsupported": self.unsupported,
            "groundedness": self.groundedness,
        }


class Attributor:
    """Scores answer sentences against numbered passages; thread-safe (the embedder holds its own lock)."""

    def __init__(self, encoder: Encoder, threshold: float, weight: float, max_citations: int = 3) -> None:
        self.encoder = encoder
        self.threshold = threshold
        self.weight = weight
        self.max_citations = max_citations

    def prepare(self, passages: Sequence[str]) -> PassageIndex:
        """Embed the passages' sentences once per answer (a stream scores its sentences against them)."""
        units: list[str] = []
        owner: list[int] = []
        tokens: list[set[str]] = []
        for i, text in enumerate(passages):
            sentences = [s for s, _ in split_sentences(_MARKER.sub("", text))] or [text]
            units.extend(sentences)
            owner.extend([i] * len(sentences))
            tokens.append(set(tokenize(text)))
        vectors = self.encoder.embed(units) if units else np.zeros((0, 1), dtype=np.float32)
        return PassageIndex(len(passages), vectors, np.asarray(owner, dtype=np.int64), tokens)

    def score(self, index: PassageIndex, number: int, sentence: str) -> SentenceSupport:
        """Support of one sentence (index `number` in the answer) for every passage."""
        clean = _MARKER.sub("", sentence).strip()
        words = tokenize(clean)
        if len(words) < MIN_CLAIM_TOKENS or index.count == 0:
            return SentenceSupport(number, clean, False, 0.0, [])
        vec = self.encoder.embed([clean])[0]
        sims = index.vectors @ vec
        scores: dict[int, dict[str, float]] = {}
        for p in range(index.count):
            mask = index.owner == p
            cosine = float(sims[mask].max()) if mask.any() else 0.0
            lexical = sum(1 for w in words if w in index.tokens[p]) / len(words)
            support = self.weight * cosine + (1 - self.weight) * lexical
            scores[p + 1] = {"support": support, "cosine": cosine, "lexical": lexical}
        ranked = sorted(scores, key=lambda n: -scores[n]["support"])
        cited = [n for n in ranked if scores[n]["support"] >= self.threshold][: self.max_citations]
        shown = {n: scores[n] for n in (cited or ranked[:1])}
        return SentenceSupport(number, clean, True, scores[ranked[0]]["support"], cited, shown)

    def attribute(self, answer: str, passages: Sequence[str], index: PassageIndex | None = None) -> Attribution:
        """Attribute every sentence and rebuild the answer with `[n]` markers (the model's own are replaced).

        `index`: the passages already prepared (the service embeds them while the model generates)."""
        index = index if index is not None else self.prepare(passages)
        parts = split_sentences(answer)
        sentences = [self.score(index, i, s) for i, (s, _) in enumerate(parts)]
        return Attribution(self.render(parts, sentences), sentences, self.threshold, self.weight)

    @staticmethod
    def render(parts: Sequence[tuple[str, str]], sentences: Sequence[SentenceSupport]) -> str:
        """The answer text with each sentence's markers inserted (the model's own markers dropped)."""
        out = []
        for (text, sep), s in zip(parts, sentences, strict=True):
            out.append(with_markers(_MARKER.sub("", text), s.citations) + sep)
        return "".join(out).strip()


@dataclass
class PassageIndex:
    """The numbered passages of one answer, embedded sentence by sentence."""

    count: int
    vectors: np.ndarray
    owner: np.ndarray  # passage index of each embedded sentence
    tokens: list[set[str]]


class StreamAttributor:
    """Attributes a streamed answer sentence by sentence: feed deltas, get the sentences completed so far."""

    def __init__(self, attributor: Attributor, passages: Sequence[str], index: PassageIndex | None = None) -> None:
        self.attributor = attributor
        self.index = index if index is not None else attributor.prepare(passages)
        self.buffer = ""
        self.parts: list[tuple[str, str]] = []
        self.sentences: list[SentenceSupport] = []

    def feed(self, delta: str) -> list[SentenceSupport]:
        """Add streamed text; return the sentences that a following boundary has closed."""
        self.buffer += delta
        done: list[SentenceSupport] = []
        while True:
            match = _BOUNDARY.search(self.buffer)
            # A boundary at the very end may still grow (". " then a quote); wait for the next character.
            if match is None or match.end() >= len(self.buffer):
                return done
            sentence, sep = self.buffer[: match.start()], match.group(0)
            self.buffer = self.buffer[match.end() :]
            if sentence.strip():
                done.append(self._close(sentence, sep))
            elif self.parts:
                self.parts[-1] = (self.parts[-1][0], self.parts[-1][1] + sentence + sep)

    def finish(self) -> tuple[list[SentenceSupport], Attribution]:
        """Close the last sentence; return it (if any) and the whole answer's attribution."""
        last = [self._close(self.buffer, "")] if self.buffer.strip() else []
        self.buffer = ""
        answer = Attributor.render(self.parts, self.sentences)
        return last, Attribution(answer, self.sentences, self.attributor.threshold, self.attributor.weight)

    def _close(self, sentence: str, sep: str) -> SentenceSupport:
        if not self.parts:
            sentence = sentence.lstrip()
        scored = self.attributor.score(self.index, len(self.sentences), sentence)
        self.parts.append((sentence, sep))
        self.sentences.append(scored)
        return scored
