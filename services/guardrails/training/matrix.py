"""Feature matrices for training and evaluation: one row per text window, computed once and cached.

Uses the service's own `FeatureExtractor` and normalisation, so training sees what the service computes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from services.guardrails.detectors import features, normalize
from services.guardrails.detectors.features import HASH_BITS, FeatureExtractor
from services.guardrails.detectors.normalize import unicode_view
from services.guardrails.training.data import Example

MAX_WINDOWS_PER_TEXT = 16  # evenly spaced; scoring a text = its highest window


@dataclass
class Matrix:
    """Window rows: hashed part (CSR, float32), dense part, and the example each row belongs to."""

    hashed: sp.csr_matrix
    dense: np.ndarray
    owner: np.ndarray  # example index of each row
    _full: sp.csr_matrix | None = None

    def full(self) -> sp.csr_matrix:
        """Hashed and dense parts side by side (built once)."""
        if self._full is None:
            self._full = sp.hstack([self.hashed, sp.csr_matrix(self.dense)], format="csr")
        return self._full

    def rows_of(self, mask: np.ndarray) -> np.ndarray:
        """Row indices whose example is selected by the boolean example mask."""
        return np.flatnonzero(mask[self.owner])


def _pick(n: int, cap: int) -> list[int]:
    if n <= cap:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, cap).round().astype(int).tolist()))


def build(examples: list[Example], extractor: FeatureExtractor, cap: int = MAX_WINDOWS_PER_TEXT) -> Matrix:
    """Features of every window (at most `cap` per text) of every example's normalised text."""
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    dense: list[np.ndarray] = []
    owner: list[int] = []
    for i, ex in enumerate(examples):
        wins = extractor.text(unicode_view(ex.text).text)
        for j in _pick(len(wins), cap):
            w = wins[j]
            indices.append(w.indices.astype(np.int32))
            values.append(np.full(w.indices.size, w.value, dtype=np.float32))
            indptr.append(indptr[-1] + w.indices.size)
            dense.append(w.dense)
            owner.append(i)
    hashed = sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.asarray(indptr, dtype=np.int64)),
        shape=(len(owner), 1 << HASH_BITS),
    )
    return Matrix(hashed, np.stack(dense), np.asarray(owner))


def cached(examples: list[Example], extractor: FeatureExtractor, cache_dir: Path | None) -> Matrix:
    """`build`, memoised on disk by the texts' digest (re-encoding everything takes minutes on 2 cores)."""
    if cache_dir is None:
        return build(examples, extractor)
    digest = hashlib.sha256()
    # The code that turns a text into features is part of the key: a changed normalisation must not reuse
    # features computed with the old one.
    for module in (normalize, features):
        digest.update(Path(module.__file__ or "").read_bytes())
    for ex in examples:
        digest.update(ex.text.encode())
        digest.update(b"\0")
    path = cache_dir / f"guardrails-features-{digest.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as data:
            hashed = sp.csr_matrix(
                (data["values"], data["indices"], data["indptr"]), shape=(int(data["rows"]), 1 << HASH_BITS)
            )
            return Matrix(hashed, data["dense"], data["owner"])
    m = build(examples, extractor)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, values=m.hashed.data, indices=m.hashed.indices, indptr=m.hashed.indptr, rows=m.hashed.shape[0],
        dense=m.dense, owner=m.owner,
    )  # fmt: skip
    return m
