"""The injection data sets and the one fixed train / held-out split that training and the benchmark share.

Held out, never trained or tuned on:
  * 30 % of jackhhao/llm-warden (stratified by label, fixed seed), after de-duplicating prompts so a
    prompt never sits on both sides;
  * all of Giskard-AI/prompt-injections (attacks only, a different source: it measures recall on a
    distribution the model never saw).
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

SPLIT_SEED = 20261129
HELDOUT_FRACTION = 0.30
WARDEN_FILE = "jailbreak_dataset_train_balanced.csv"
GISKARD_FILE = "prompt_injections.csv"


@dataclass(frozen=True)
class Example:
    """One labelled prompt (label 1 = injection or jailbreak)."""

    text: str
    label: int
    source: str


def default_data_dir() -> Path:
    """../shared/datasets/injection relative to the repository root."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "injection"


def sha256_file(path: Path) -> str:
    """Hex digest of a file, recorded with every artifact and result."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def load_split(data_dir: Path) -> tuple[list[Example], list[Example]]:
    """Return (train, heldout) as described in the module docstring; deterministic."""
    seen: set[str] = set()
    by_label: dict[int, list[Example]] = {0: [], 1: []}
    for row in _read_csv(data_dir / WARDEN_FILE):
        key = " ".join(row["prompt"].split()).lower()
        if key in seen:
            continue
        seen.add(key)
        label = 1 if row["type"].strip() == "jailbreak" else 0
        by_label[label].append(Example(row["prompt"], label, "llm-warden"))
    rng = random.Random(SPLIT_SEED)
    train: list[Example] = []
    heldout: list[Example] = []
    for label in (0, 1):
        items = sorted(by_label[label], key=lambda e: hashlib.sha256(e.text.encode()).hexdigest())
        rng.shuffle(items)
        cut = round(len(items) * HELDOUT_FRACTION)
        heldout.extend(items[:cut])
        train.extend(items[cut:])
    for row in _read_csv(data_dir / GISKARD_FILE):
        key = " ".join(row["prompt"].split()).lower()
        if key not in seen:
            heldout.append(Example(row["prompt"], 1, "giskard"))
    return train, heldout
