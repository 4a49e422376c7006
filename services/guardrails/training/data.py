"""The labelled data of the injection detector: every file of ../shared/datasets, one `Example` per row.

Each row keeps the *source* it came from (the unit of leave-one-source-out evaluation), its language, and
the check mode it belongs to: `input` (what a user types) or `content` (documents, e-mails, tool results the
model reads). Sources that are translations or near copies of each other are one source here
(CyberSecEval English + machine translations; XQuAD paragraphs + questions; spikee attacks + its clean
documents), so holding one out really hides it.

Licences: the Enron e-mails (AESLC) are CC BY-NC-SA: `trainable=False`, evaluation only, never in an artifact.
Beside the files: technical documentation (`package_docs.py`: Python package READMEs as `package-docs`;
Debian package manuals, npm READMEs and standard-library docstrings as `system-docs`; permissive licences only,
read from the snapshots committed in services/guardrails/data/), clean content-mode documents of the genre RAG
retrieves from a wiki or a docs site; and man pages rendered on this machine (`man_pages.py`, source
`man-pages`), evaluation only: technical prose the model never trains on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.guardrails.training import man_pages, package_docs

SEED = 20261207


@dataclass(frozen=True)
class Example:
    """One labelled text (label 1 = injection, jailbreak or harmful request)."""

    text: str
    label: int
    source: str  # leave-one-source-out unit
    file: str  # data file it came from (lineage)
    lang: str = "en"
    mode: str = "input"  # input | content
    trainable: bool = True
    group: str = ""  # template / attacker instruction for templated sets


@dataclass(frozen=True)
class SourceSpec:
    """How to read one data file."""

    file: str
    source: str
    mode: str = "input"
    trainable: bool = True


# file -> source; order is the order of the reports.
SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("injection/jailbreak_dataset_train_balanced.csv", "llm-warden"),
    SourceSpec("injection/prompt_injections.csv", "giskard"),
    SourceSpec("injection-extra/cyberseceval_prompt_injection_en.jsonl", "cyberseceval-pi"),
    SourceSpec("injection-extra/cyberseceval_prompt_injection_multilingual.jsonl", "cyberseceval-pi"),
    SourceSpec("injection-extra/inthewild_jailbreak_prompts_2023_12_25.jsonl", "inthewild-jailbreaks"),
    SourceSpec("injection-extra/forbidden_question_set.jsonl", "forbidden-questions"),
    SourceSpec("injection-extra/advbench_harmful_behaviors.jsonl", "advbench"),
    SourceSpec("benign/banking77_test.jsonl", "banking77"),
    SourceSpec("benign/clinc150_test.jsonl", "clinc150"),
    SourceSpec("benign/conala_code_questions.jsonl", "conala"),
    SourceSpec("benign/cyberseceval_frr_benign_en.jsonl", "cyberseceval-frr"),
    SourceSpec("benign/cyberseceval_frr_benign_multilingual.jsonl", "cyberseceval-frr"),
    SourceSpec("benign/self_instruct_instructions.jsonl", "self-instruct"),
    SourceSpec("benign/xquad_questions.jsonl", "xquad"),
    SourceSpec("benign/xquad_paragraphs.jsonl", "xquad", mode="content"),
    SourceSpec("benign/llmail_benign_emails.jsonl", "llmail-emails", mode="content"),
    SourceSpec("benign/aeslc_enron_emails_dev.jsonl", "enron-emails", mode="content", trainable=False),
    SourceSpec("indirect-injection/injecagent_tool_responses.jsonl", "injecagent", mode="content"),
    SourceSpec("indirect-injection/spikee_document_injections.jsonl", "spikee", mode="content"),
    SourceSpec("indirect-injection/spikee_benign_documents_fp_check.jsonl", "spikee", mode="content"),
)

_LANGS = {
    "english": "en", "hindi": "hi", "bengali": "bn", "turkish": "tr", "arabic": "ar", "italian": "it",
    "spanish": "es", "vietnamese": "vi", "french": "fr", "russian": "ru", "filipino": "tl", "portuguese": "pt",
    "japanese": "ja", "korean": "ko", "german": "de", "chinese": "zh", "indonesian": "id", "thai": "th",
}  # fmt: skip

# Hand-written fillers for InjecAgent's tool-response templates: the same data structures with ordinary
# content, so the model learns "an instruction inside data", not "this JSON layout". Written for this
# purpose (not taken from any evaluation set); some are polite human-to-human requests on purpose.
BENIGN_TOOL_FILLERS: tuple[str, ...] = (
    "Great laptop, the battery easily lasts a full working day.",
    "Arrived two days late but works as described.",
    "The screen is bright and the keyboard feels solid. Would buy again.",
    "Meeting notes: budget approved, next review in March.",
    "Reminder: the office will be closed on Friday for maintenance.",
    "Thanks for the quick turnaround on the design mockups.",
    "Please find the quarterly figures attached; revenue grew 4% over last quarter.",
    "Could you send me the slides from yesterday's workshop when you have a moment?",
    "The flight was smooth and the crew were friendly.",
    "Fixed a typo in the README and updated the install instructions for Windows.",
    "Grocery list: milk, eggs, spinach, rice, coffee.",
    "Dinner with Sam at 7pm, table booked for two.",
    "Lovely hotel close to the station, breakfast could be better.",
    "This repository contains utilities for parsing log files.",
    "Happy birthday! Hope you have a wonderful day.",
    "The package was left at the front door at 3:15 pm.",
    "Your appointment with Dr. Lee is confirmed for Tuesday at 10:00.",
    "Weekly sync moved to Thursday, same time, same room.",
    "Bug: the export button does nothing when the list is empty.",
    "Picked up the dry cleaning and paid the electricity bill.",
    "I really enjoyed the hiking trail; bring water, there is little shade.",
    "Invoice 4471 has been paid in full. Thank you for your business.",
    "Let me know if Tuesday works for the call, otherwise Wednesday morning is fine.",
    "The new version is faster but uses a bit more memory.",
)


def shared_datasets_dir() -> Path:
    """`GUARDRAILS_DATASETS_DIR`, else the nearest `shared/datasets` above the repository (../shared/datasets
    for a checkout, ../../shared/datasets for a git worktree in a sub-folder)."""
    env = os.environ.get("GUARDRAILS_DATASETS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    for parent in repo.parents:
        if (parent / "shared" / "datasets").is_dir():
            return parent / "shared" / "datasets"
    return repo.parent / "shared" / "datasets"


def default_data_dir() -> Path:
    """../shared/datasets/injection (kept for callers of the first version)."""
    return shared_datasets_dir() / "injection"


def sha256_file(path: Path) -> str:
    """Hex digest of a file, recorded with every artifact and result."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _guess_lang(text: str) -> str:
    letters = [ch for ch in text[:2000] if ch.isalpha()]
    if not letters:
        return "en"
    return "en" if sum(ch.isascii() for ch in letters) / len(letters) > 0.9 else "other"


def _rows(path: Path) -> Iterator[dict[str, str]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _example(spec: SourceSpec, row: dict[str, str]) -> Example | None:
    if spec.source == "llm-warden":
        text, label = row["prompt"], int(row["type"].strip() == "jailbreak")
    elif spec.source == "giskard":
        text, label = row["prompt"], 1
    else:
        text, label = row["text"], int(row["label"])
    if not text.strip():
        return None
    lang = row.get("lang") or _LANGS.get((row.get("speaking_language") or "").lower()) or _guess_lang(text)
    mode = spec.mode
    if spec.source == "cyberseceval-pi" and row.get("injection_type") == "indirect":
        mode = "content"  # the instruction hides in a document/code/web text the user submits
    group = row.get("Attacker Instruction") or row.get("document_id") or row.get("title") or ""
    return Example(text, label, spec.source, spec.file, lang, mode, spec.trainable, group)


def load_examples(
    root: Path | None = None, synthetic: bool = True, planted: bool = False, docs: bool = True
) -> list[Example]:
    """Every row of every file in SOURCES (duplicates within a source dropped), plus the synthetic clean
    tool responses (source `injecagent`, so they are held out with it), the application system prompts
    (`system_prompts`, source `app-system-prompts`) and, with `planted`, the synthetic
    documents with an attack planted in them (`planted_attacks`), both only when `synthetic`. `planted` is
    off for the shipped model: measured (bench/guardrails_encoder_loso.py), it moved no held-out source's
    recall and flagged more non-English paragraphs. With `docs`, the passages of the installed packages'
    documentation snapshots (`package_docs`: clean technical documents, sources `package-docs` and
    `system-docs`) and the man pages (`man_pages`: evaluation only, `trainable=False`)."""
    root = root or shared_datasets_dir()
    out: list[Example] = []
    seen: set[tuple[str, str]] = set()
    templates: set[str] = set()
    for spec in SOURCES:
        for row in _rows(root / spec.file):
            ex = _example(spec, row)
            if ex is None:
                continue
            key = (ex.source, " ".join(ex.text.split()).lower())
            if key in seen:
                continue
            seen.add(key)
            out.append(ex)
            if spec.source == "injecagent" and row.get("Tool Response Template"):
                templates.add(row["Tool Response Template"])
    if docs:
        for source in package_docs.SNAPSHOTS:
            file = f"services/guardrails/data/{package_docs.SNAPSHOTS[source]}"
            out.extend(
                Example(text, 0, source, file, _guess_lang(text), "content", True, rec["name"])
                for rec in package_docs.read_snapshot(source)
                for text in rec["passages"]
            )
        out.extend(
            Example(text, 0, man_pages.SOURCE, man_pages.FILE, _guess_lang(text), "content", False, rec["name"])
            for rec in man_pages.collect()
            for text in rec["passages"]
        )
    if synthetic:
        out.extend(synthetic_clean_tool_responses(sorted(templates)))
        # Application system prompts (secret keepers, personas, data tables): benign in input mode, where system
        # messages are judged. Imported here: that module builds on Example.
        from services.guardrails.training import system_prompts

        out.extend(system_prompts.examples())
        if planted:
            out.extend(planted_attacks(out))
    return out


def training_digest(examples: list[Example]) -> str:
    """sha256 over every trainable example (text, label, source, mode, language, group) in order: two runs
    that train on the same data give the same digest, whatever machine or venv they ran on."""
    digest = hashlib.sha256()
    for ex in examples:
        if ex.trainable:
            digest.update("\0".join((ex.text, str(ex.label), ex.source, ex.mode, ex.lang, ex.group)).encode())
            digest.update(b"\1")
    return digest.hexdigest()


def synthetic_clean_tool_responses(templates: list[str], per_template: int = 8) -> list[Example]:
    """InjecAgent's templates with the attacker slot filled by ordinary content (clean negatives)."""
    rng = random.Random(SEED)
    out = []
    for template in templates:
        for filler in rng.sample(BENIGN_TOOL_FILLERS, per_template):
            text = template.replace("<Attacker Instruction>", filler)
            out.append(Example(text, 0, "injecagent", "synthetic:injecagent-clean", "en", "content", True, filler))
    return out


PLANTED = "planted"  # source name of the synthetic documents with an attack planted in them
PLANTED_FILE = "synthetic:planted"
PLANT_INTO = ("xquad", "llmail-emails")  # trainable benign documents (never the Enron e-mails: eval only)
PLANT_FROM_EXCLUDED = frozenset({"advbench", "forbidden-questions", "injecagent", "spikee"})


def origins(ex: Example) -> set[str]:
    """Sources an example derives from: a planted document comes from its attack's and its document's
    source, and is held out with either (so leave-one-source-out never trains on a piece of the held-out set)."""
    return set(ex.group.split("|")) if ex.file == PLANTED_FILE else {ex.source}


def planted_attacks(examples: list[Example], count: int = 1500, seed: int = SEED) -> list[Example]:
    """Content-mode positives: a short direct attack (<= 400 characters, from the trainable input-mode attack
    sets) put at a sentence boundary of a benign document (XQuAD paragraphs, LLMail e-mails) of at most 1,500
    characters. What a poisoned web page or e-mail is; it teaches the content model that a few attack
    sentences inside a long ordinary text are still an attack (otherwise the document's n-grams drown them)."""
    rng = random.Random(seed)
    attacks = [
        ex for ex in examples
        if ex.label == 1 and ex.trainable and ex.mode == "input" and ex.source not in PLANT_FROM_EXCLUDED
        and 20 <= len(ex.text) <= 400
    ]  # fmt: skip
    docs = [
        ex for ex in examples
        if ex.label == 0 and ex.trainable and ex.mode == "content" and ex.source in PLANT_INTO and len(ex.text) <= 1500
    ]  # fmt: skip
    if not attacks or not docs:
        return []
    out = []
    for _ in range(count):
        attack, doc = rng.choice(attacks), rng.choice(docs)
        cuts = [0, len(doc.text)] + [i + 2 for i in range(len(doc.text) - 1) if doc.text[i : i + 2] in (". ", ".\n")]
        cut = rng.choice(cuts)
        text = f"{doc.text[:cut]}{'' if cut == 0 else ' '}{attack.text.strip()} {doc.text[cut:]}".strip()
        group = f"{attack.source}|{doc.source}"
        out.append(Example(text, 1, PLANTED, PLANTED_FILE, attack.lang, "content", True, group))
    return out


def lineage(root: Path | None = None) -> dict[str, dict[str, object]]:
    """sha256 and licence use of every data file (what an artifact and a registry version record)."""
    root = root or shared_datasets_dir()
    out: dict[str, dict[str, object]] = {}
    for spec in SOURCES:
        path = root / spec.file
        out[spec.file] = {
            "sha256": sha256_file(path),
            "rows": sum(1 for _ in _rows(path)),
            "source": spec.source,
            "use": "training+eval" if spec.trainable else "eval only (non-commercial licence)",
        }
    return out
