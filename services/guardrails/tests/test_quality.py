"""Detection quality, asserted loosely (the benchmark in bench/ reports the exact figures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.guardrails.detectors.base import CheckInput
from services.guardrails.settings import GuardrailsSettings
from services.guardrails.training.data import default_data_dir, load_split, sha256_file

DATA = default_data_dir()
PII_FILE = DATA.parent / "pii" / "generated_small.json"
MULTILINGUAL = Path(__file__).resolve().parents[1] / "data" / "multilingual_eval.jsonl"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared/datasets is not beside the repository")


def _flags(detectors: dict, text: str) -> bool:
    return bool(detectors["input"]["injection"].run(CheckInput(text=text, direction="input"), {}))


@needs_data
def test_artifact_metadata_matches_the_data_and_split() -> None:
    meta = json.loads((GuardrailsSettings().artifacts_dir / "injection_lr.json").read_text())
    for name, digest in meta["data"].items():
        if name.endswith(".csv"):
            assert sha256_file(DATA / name) == digest, name
    _, heldout = load_split(DATA)
    assert meta["data"]["heldout_rows"] == len(heldout)
    import hashlib

    assert meta["data"]["heldout_sha256"] == hashlib.sha256("\n\0".join(e.text for e in heldout).encode()).hexdigest()


@needs_data
def test_heldout_recall_and_false_positive_rate(detectors: dict) -> None:
    _, heldout = load_split(DATA)
    labels = np.array([e.label for e in heldout])
    predicted = np.array([_flags(detectors, e.text) for e in heldout])
    recall = predicted[labels == 1].mean()
    fpr = predicted[labels == 0].mean()
    assert recall >= 0.88, recall
    assert fpr <= 0.06, fpr


def test_multilingual_set(detectors: dict) -> None:
    rows = [json.loads(line) for line in MULTILINGUAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    benign_flagged = [r["text"] for r in rows if r["label"] == 0 and _flags(detectors, r["text"])]
    attacks_missed = [r["text"] for r in rows if r["label"] == 1 and not _flags(detectors, r["text"])]
    assert len(benign_flagged) <= 1, benign_flagged
    assert len(attacks_missed) <= 3, attacks_missed


@needs_data
def test_structured_pii_recall_on_the_shared_set(detectors: dict) -> None:
    type_map = {
        "EMAIL_ADDRESS": "EMAIL",
        "PHONE_NUMBER": "PHONE",
        "CREDIT_CARD": "CREDIT_CARD",
        "US_SSN": "US_SSN",
        "IP_ADDRESS": "IP_ADDRESS",
    }
    hits = {t: [0, 0] for t in type_map.values()}
    for rec in json.loads(PII_FILE.read_text()):
        found = detectors["input"]["pii"].run(CheckInput(text=rec["full_text"], direction="input"), {})
        for span in rec["spans"]:
            etype = type_map.get(span["entity_type"])
            if etype is None:
                continue
            hits[etype][1] += 1
            if any(
                f.entity == etype and f.start < span["end_position"] and span["start_position"] < f.end for f in found
            ):
                hits[etype][0] += 1
    for etype, (tp, total) in hits.items():
        assert total and tp / total >= 0.95, (etype, tp, total)
