"""Features of the learned injection detector, numpy only (the service never imports scikit-learn or torch).

One text window becomes a sparse set of hashed indices plus a dense vector:
  * character 3-, 4- and 5-grams of the normalised text (whitespace collapsed): they carry across languages
    and scripts, spelling variants and inflections, where a word list or an English vocabulary does not;
  * MiniLM word-piece unigrams and bigrams ("previous instructions", "developer mode");
  * the static MiniLM sentence vector of the window (meaning, beyond surface form).
The hashed part is binary (present or not) and scaled by 1/sqrt(number of distinct indices), so a linear
model's score is the mean-like sum of its weights. Training (`training/`) calls the same functions, so the
service computes exactly the features the model was fitted on.

Hashing is a polynomial rolling hash over code points in uint64 arithmetic (wrapping on purpose), mixed by a
multiplicative finaliser: vectorised, deterministic across processes and platforms (unlike `hash()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from services.guardrails.detectors.embeddings import StaticEmbedder

HASH_BITS = 18
CHAR_NGRAMS = (3, 4, 5)
WINDOW_CHARS = 1000
STRIDE_CHARS = 500
MAX_WINDOWS = 64  # beyond this the text is read as evenly spaced windows (bounded cost on huge inputs)
_WORD = re.compile(r"\S+")
_PRIME = np.uint64(1_000_003)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SALT_TOKEN = np.uint64(0x51ED27)
_SALT_BIGRAM = np.uint64(0xB16B00B5)


def collapse(text: str) -> str:
    """Whitespace runs to one space, ends stripped: layout is not a signal the model should learn."""
    return " ".join(_WORD.findall(text))


def _finalise(h: np.ndarray, bits: int) -> np.ndarray:
    h = h * _MIX
    h ^= h >> np.uint64(29)
    h = h * _MIX
    return (h >> np.uint64(64 - bits)).astype(np.int64)


def char_ngram_hashes(text: str, bits: int = HASH_BITS) -> np.ndarray:
    """Hashed indices of every character n-gram (n in CHAR_NGRAMS), padded with a space at both ends."""
    padded = f" {text} "
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    out = []
    for n in CHAR_NGRAMS:
        if codes.size < n:
            continue
        count = codes.size - n + 1
        h = np.full(count, np.uint64(n), dtype=np.uint64)
        for k in range(n):
            h = h * _PRIME + codes[k : k + count]
        out.append(_finalise(h, bits))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def token_hashes(ids: np.ndarray, bits: int = HASH_BITS) -> np.ndarray:
    """Hashed indices of word-piece unigrams and bigrams."""
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    u = ids.astype(np.uint64)
    uni = _finalise(u + _SALT_TOKEN, bits)
    bi = _finalise(u[:-1] * np.uint64(40_009) + u[1:] + _SALT_BIGRAM, bits) if u.size > 1 else uni[:0]
    return np.concatenate([uni, bi])


def window_starts(length: int) -> list[int]:
    """Start offsets of the windows of a text of `length` characters; one window up to 1.5 windows long."""
    if length <= WINDOW_CHARS * 3 // 2:
        return [0]
    starts = [*range(0, length - WINDOW_CHARS, STRIDE_CHARS), length - WINDOW_CHARS]
    if len(starts) > MAX_WINDOWS:
        picks = np.linspace(0, len(starts) - 1, MAX_WINDOWS).round().astype(int)
        starts = [starts[i] for i in sorted(set(picks.tolist()))]
    return starts


def windows(text: str) -> list[str]:
    """Overlapping windows of a (collapsed) text."""
    starts = window_starts(len(text))
    if starts == [0]:
        return [text]
    return [text[s : s + WINDOW_CHARS] for s in starts]


@dataclass(frozen=True)
class WindowFeatures:
    """The features of one window: hashed indices (unique), their common value, the dense vector."""

    indices: np.ndarray
    value: float
    dense: np.ndarray


class FeatureExtractor:
    """Turns a window of normalised text into `WindowFeatures`."""

    def __init__(self, embedder: StaticEmbedder, bits: int = HASH_BITS) -> None:
        self.embedder = embedder
        self.bits = bits
        self.dim = embedder.dim

    def window(self, text: str) -> WindowFeatures:
        """Features of one window (already collapsed)."""
        ids = self.embedder.token_ids(text)
        idx = np.sort(np.concatenate([char_ngram_hashes(text, self.bits), token_hashes(ids, self.bits)]))
        if idx.size:
            idx = idx[np.concatenate(([True], idx[1:] != idx[:-1]))]  # np.unique, without its hash-table cost
        if ids.size:
            vec = self.embedder.table[ids].mean(axis=0)
            norm = float(np.linalg.norm(vec)) or 1.0
            dense = (vec / norm).astype(np.float32)
        else:
            dense = np.zeros(self.dim, dtype=np.float32)
        value = 1.0 / np.sqrt(idx.size) if idx.size else 0.0
        return WindowFeatures(idx, float(value), dense)

    def text(self, text: str) -> list[WindowFeatures]:
        """Features of every window of a normalised text."""
        return [self.window(w) for w in windows(collapse(text))]
