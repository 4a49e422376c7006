"""Token-aware chunking that respects Markdown headings: a chunk never spans two sections."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CountTokens = Callable[[Sequence[str]], list[int]]
CHUNKER_NAME = "markdown-sentence-packer"
CHUNKER_VERSION = "1"

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=\S)")


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage; `section` is the heading path it sits under."""

    index: int
    text: str
    section: str
    tokens: int


def split_sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body) pairs; headings inside code fences are not headings."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    path: list[tuple[int, str]] = []
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, match.group(2))]
            sections.append((" > ".join(title for _, title in path), []))
        else:
            sections[-1][1].append(line)
    return [(head, "\n".join(lines).strip()) for head, lines in sections if "\n".join(lines).strip()]


def _units(body: str, count: CountTokens, limit: int) -> list[tuple[str, int, bool]]:
    """Pieces no longer than `limit` tokens: paragraphs, else sentences, else token windows.

    The flag says whether the piece starts a paragraph (joined with a blank line rather than a space).
    """
    out: list[tuple[str, int, bool]] = []
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    for para, n in zip(paragraphs, count(paragraphs), strict=True):
        if n <= limit:
            out.append((para, n, True))
            continue
        sentences = [s for s in _SENTENCE_END.split(para) if s.strip()]
        for i, (sent, m) in enumerate(zip(sentences, count(sentences), strict=True)):
            if m <= limit:
                out.append((sent, m, i == 0))
            else:
                for j, piece in enumerate(_token_windows(sent, limit, count)):
                    out.append((piece, min(limit, count([piece])[0]), i == 0 and j == 0))
    return out


def _token_windows(text: str, limit: int, count: CountTokens) -> list[str]:
    """Split an over-long run (no sentence breaks) into word windows that fit; words are cheap to re-count."""
    words = text.split()
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        if current and count([" ".join([*current, word])])[0] > limit:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_text(text: str, count: CountTokens, size: int = 200, overlap: int = 32) -> list[Chunk]:
    """Pack units greedily up to `size` tokens; a new chunk repeats trailing units worth up to `overlap`."""
    if overlap >= size:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    chunks: list[Chunk] = []
    for section, body in split_sections(text):
        units = _units(body, count, size)
        current: list[tuple[str, int, bool]] = []
        total = 0
        for unit in units:
            if current and total + unit[1] > size:
                chunks.append(_make(len(chunks), current, section))
                carried: list[tuple[str, int, bool]] = []
                carried_tokens = 0
                for prev in reversed(current):
                    if carried_tokens + prev[1] > overlap or carried_tokens + prev[1] + unit[1] > size:
                        break
                    carried.insert(0, prev)
                    carried_tokens += prev[1]
                current, total = carried, carried_tokens
            current.append(unit)
            total += unit[1]
        if current:
            chunks.append(_make(len(chunks), current, section))
    return chunks


def _make(index: int, units: list[tuple[str, int, bool]], section: str) -> Chunk:
    text = ""
    for i, (piece, _, starts_para) in enumerate(units):
        text += piece if i == 0 else ("\n\n" if starts_para else " ") + piece
    return Chunk(index=index, text=text, section=section, tokens=sum(n for _, n, _ in units))
