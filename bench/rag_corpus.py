"""A 10,000-chunk corpus of real text for the RAG latency bench (bench/rag_bench.py), every chunk embedded.

There is no single public corpus of that size on this machine, so it is the document-like rows of the shared data
sets (/work/shared/datasets, each described with its licence in the README beside it), in this order, until
`chunks` chunks are reached:

| source | what | licence (per the shared README) |
|---|---|---|
| rag/small.json | 87 Wikipedia paragraphs (SQuAD 2.0 dev sample) | CC BY-SA 4.0 |
| benign/xquad_paragraphs.jsonl, English | 240 Wikipedia paragraphs (XQuAD) | CC BY-SA 4.0 |
| benign/aeslc_enron_emails_dev.jsonl | 1,960 Enron emails (AESLC dev) | CC BY-NC-SA 4.0 (used here, not shipped) |
| benign/llmail_benign_emails.jsonl | 237 business emails (LLMail) | MIT |
| indirect-injection/spikee_benign_documents_fp_check.jsonl | benign emails and notes (spikee) | Apache 2.0 |
| benign/cyberseceval_frr_benign_en.jsonl | 750 technical requests (CyberSecEval) | MIT |
| benign/self_instruct_instructions.jsonl | 427 task instructions (Self-Instruct seeds) | Apache 2.0 |
| benign/conala_code_questions.jsonl | 2,088 Stack Overflow questions (CoNaLa) | CC BY-SA (upstream; not verified) |
| benign/cyberseceval_frr_benign_multilingual.jsonl | 700 technical requests, 7 languages | MIT |
| benign/banking77_test.jsonl | 3,080 customer questions to a bank (BANKING77) | CC BY 4.0 |
| benign/xquad_paragraphs.jsonl, other languages | 2,640 Wikipedia paragraphs in 11 languages | CC BY-SA 4.0 |

Each row is one document (title: its source and row), cut by the service's own chunker (services/rag/chunking.py,
the settings' chunk size and overlap) and embedded as the ingestion pipeline embeds it (`title\\ntext`) by the
service's Embedder with the int8 model and a session pool. The vectors are cached under .llmops/bench/ (keyed by
the texts and the model version), so a rerun does not embed again; the first run reports how long embedding took.
Nothing here is committed but this code: the corpus is rebuilt from the shared files.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.rag.chunking import chunk_text
from services.rag.embedder import Embedder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
if not SHARED.exists():  # a worktree beside the main checkout: the shared folder is two levels up
    SHARED = Path("/work/shared/datasets")
CACHE = REPO / ".llmops" / "bench"
SOURCES = [  # English prose first; the other languages' Wikipedia paragraphs (long in word pieces) fill up to the end
    "benign/xquad_paragraphs.jsonl:en",
    "benign/aeslc_enron_emails_dev.jsonl",
    "benign/llmail_benign_emails.jsonl",
    "indirect-injection/spikee_benign_documents_fp_check.jsonl",
    "benign/cyberseceval_frr_benign_en.jsonl",
    "benign/self_instruct_instructions.jsonl",
    "benign/conala_code_questions.jsonl",
    "benign/cyberseceval_frr_benign_multilingual.jsonl",
    "benign/banking77_test.jsonl",
    "benign/xquad_paragraphs.jsonl",
]
BLOCK = 500  # chunks embedded, then saved, at a time: an interrupted first run resumes where it stopped


@dataclass
class Corpus:
    """The chunks (title, text, what was embedded), their vectors, and how they were made."""

    titles: list[str]
    texts: list[str]
    vectors: np.ndarray
    tokens: list[int]
    meta: dict[str, Any]


def documents() -> list[tuple[str, str, str]]:
    """(source, title, text) of every source row, in the order above, exact duplicates dropped."""
    docs: list[tuple[str, str, str]] = []
    squad = json.loads((SHARED / "rag" / "small.json").read_text(encoding="utf-8"))
    for article in squad["data"]:
        for i, para in enumerate(article["paragraphs"]):
            docs.append(("rag/small.json", f"{article['title'].replace('_', ' ')} #{i}", para["context"]))
    seen = {text for _, _, text in docs}
    for entry in SOURCES:
        source, _, lang = entry.partition(":")
        rows = (json.loads(line) for line in (SHARED / source).read_text(encoding="utf-8").splitlines() if line)
        for i, row in enumerate(rows):
            text = str(row["text"]).strip()
            if lang and row.get("lang") != lang:
                continue
            if text and text not in seen:
                seen.add(text)
                title = str(row.get("title") or "").replace("_", " ")
                docs.append((source, f"{title} ({row['lang']})" if row.get("lang") else f"{source} #{i}", text))
    return docs


def build(embedder: Embedder, chunks: int, size: int, overlap: int) -> Corpus:
    """The first `chunks` chunks of the documents, embedded (or read back from the cache)."""
    titles, texts, embedded, counts, sources = [], [], [], [], []
    size = min(size, embedder.max_tokens)  # what the pipeline does: a chunk never exceeds the model's window
    for source, title, text in documents():
        for c in chunk_text(text, embedder.count_tokens, size, overlap):
            titles.append(title)
            texts.append(c.text)
            embedded.append(f"{title} > {c.section}\n{c.text}" if c.section else f"{title}\n{c.text}")
            counts.append(c.tokens)
            sources.append(source)
        if len(texts) >= chunks:
            break
    if len(texts) < chunks:
        raise SystemExit(f"the shared data sets give {len(texts)} chunks, fewer than --chunks {chunks}")
    titles, texts, embedded, counts = titles[:chunks], texts[:chunks], embedded[:chunks], counts[:chunks]
    per_source = {source: sources[:chunks].count(source) for source in dict.fromkeys(sources[:chunks])}
    digest = hashlib.sha256("\x1e".join([embedder.model_version, *embedded]).encode()).hexdigest()[:16]
    path = CACHE / f"rag_real_{chunks}_{digest}.npy"
    meta: dict[str, Any] = {
        "chunks": chunks,
        "chunks_per_source": per_source,
        "model_version": embedder.model_version,
        "embedder": f"services.rag.embedder.Embedder(quantized={embedder.quantized}, workers={embedder.workers}, "
        f"threads={embedder.threads}, batch_size={embedder.batch_size})",
        "chunk_tokens_p50_p90_max": [int(np.percentile(counts, 50)), int(np.percentile(counts, 90)), max(counts)],
        "vectors_cache": str(path.relative_to(REPO)),
    }
    if path.exists():
        vectors = np.load(path)
        meta["embedded_this_run"] = False
    else:
        parts = CACHE / "parts"
        parts.mkdir(parents=True, exist_ok=True)
        started, done, names = time.perf_counter(), 0, []
        for lo in range(0, chunks, BLOCK):
            block = "\x1e".join([embedder.model_version, *embedded[lo : lo + BLOCK]])
            part = parts / f"{hashlib.sha256(block.encode()).hexdigest()[:16]}.npy"  # by content: reused if reordered
            names.append(part)
            if not part.exists():
                np.save(part, embedder.embed(embedded[lo : lo + BLOCK]))
                done += len(embedded[lo : lo + BLOCK])
                print(f"embedded {lo + BLOCK} / {chunks} chunks", flush=True)
        seconds = time.perf_counter() - started
        vectors = np.concatenate([np.load(part) for part in names])
        np.save(path, vectors)
        meta |= {"embedded_this_run": True, "embed_s": round(seconds, 1), "chunks_embedded_this_run": done}
        if done == chunks:
            meta["chunks_per_s"] = round(chunks / seconds, 1)
    return Corpus(titles, texts, vectors, counts, meta)


if __name__ == "__main__":  # embed once ahead of the bench: python bench/rag_corpus.py [chunks]
    import sys

    from services.rag.embedder import available_cpus
    from services.rag.settings import RagSettings

    settings = RagSettings()
    model = Embedder(16, 1, workers=min(4, available_cpus()), quantized=True)
    corpus = build(
        model, int(sys.argv[1]) if len(sys.argv) > 1 else 10_000, settings.chunk_size, settings.chunk_overlap
    )
    print(json.dumps(corpus.meta, indent=1))
