"""RAG's own requests, as the gateway checks them: a benign set the guardrails must pass (~0 blocked).

Why: a learned harmful-request model that passed every benign source held out blocked 14 of 24 answers of the
platform's docs assistant in a load run ('How are models promoted to production?', p=0.98). No row of the
leave-one-source-out table looked like what the platform itself sends, so this set measures it.

Each question of bench/data/rag_platform/questions.jsonl (written from the headings of docs/, the corpus
`make up` ingests as `llmops-docs`) goes the answer path, in process:
1. retrieval: docs/ extracted and chunked by RAG's own code (extract, chunk_text, the settings' chunk size and
   overlap, the MiniLM token counter), hybrid = plain RRF of dense (RAG's Embedder on "title > section\\ntext")
   and BM25 (RAG's encoder, IDF over this corpus) top 50, the top `default_top_k`. A replica of the service's
   Qdrant query, not the service: ranks may differ a little, the kind of text does not;
2. RAG's content check (content_check.ContentGuard's rules): each passage checked in content mode, a block
   drops it, a flag fences it, a redaction replaces it;
3. RAG's prompt: `context_blocks` within `max_context_chars`, then rag-answer v2's `messages_with_context`;
4. the gateway's view: `take_context_marks` + `segments` (the marked passages are context) and the body
   `GuardrailsClient.check_input` sends, judged by `checker.chat_items` + `Checker.check_many` under the
   default policy: one decision per request, what the gateway would turn into 400 guardrail_blocked.
Nothing here reaches a service: no abstention (every question is assumed to reach the model: the worst case).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from services.gateway.messages import segments, take_context_marks
from services.guardrails.checker import Checker, chat_items
from services.guardrails.detectors.base import CheckInput
from services.guardrails.policies import Policy
from services.rag.answer import context_blocks
from services.rag.chunking import chunk_text
from services.rag.embedder import Embedder
from services.rag.extract import extract
from services.rag.fusion import rrf
from services.rag.prompts import load_default
from services.rag.retrieval import Passage
from services.rag.settings import RagSettings
from services.rag.sparse import BM25Encoder

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bench" / "data" / "rag_platform" / "questions.jsonl"
CANDIDATES = 50  # each list's depth before fusion (the service's `candidates`)
_ACTIONS = {"block": "dropped", "flag": "fenced", "redact": "redacted"}


def questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    """The benign platform questions (id, question, origin)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class DocsIndex:
    """docs/ chunked and indexed as RAG ingests it (see the module docstring for what is a replica)."""

    def __init__(self, folder: Path, embedder: Embedder, settings: RagSettings) -> None:
        self.embedder = embedder
        self.encoder = BM25Encoder()
        size = min(settings.chunk_size, embedder.max_tokens)
        self.passages: list[Passage] = []
        for path in sorted(folder.rglob("*.md")):
            text, found = extract(path.read_bytes(), "markdown")
            title = found or path.name
            for chunk in chunk_text(text, embedder.count_tokens, size, settings.chunk_overlap):
                doc = str(path.relative_to(folder))
                self.passages.append(Passage(f"{doc}#{chunk.index}", doc, title, chunk.section, chunk.text, 0, 0, {}))
        self.dense = embedder.embed(
            [f"{p.title} > {p.section}\n{p.text}" if p.section else f"{p.title}\n{p.text}" for p in self.passages]
        )
        self.sparse = [self.encoder.encode_document(f"{p.title}\n{p.section}\n{p.text}") for p in self.passages]
        df = Counter(i for vec in self.sparse for i in vec.indices)
        n = len(self.sparse)
        self.idf = {i: math.log((n - c + 0.5) / (c + 0.5) + 1) for i, c in df.items()}

    def retrieve(self, question: str, top_k: int) -> list[Passage]:
        """Hybrid: plain RRF of the dense and the BM25 top CANDIDATES."""
        q = self.embedder.embed([question])[0]
        dense = np.argsort(-(self.dense @ q))[:CANDIDATES].tolist()
        terms = self.encoder.encode_query(question).indices
        bm25 = np.array([sum(v * self.idf.get(i, 0.0) for i, v in zip(d.indices, d.values, strict=True)
                             if i in terms) for d in self.sparse])  # fmt: skip
        sparse = [int(i) for i in np.argsort(-bm25)[:CANDIDATES] if bm25[i] > 0]
        return [self.passages[i] for i, _ in rrf([dense, sparse])[:top_k]]


def screen(checker: Checker, policy: Policy, passages: list[Passage]) -> tuple[list[Passage], list[str]]:
    """RAG's content check (content_check.ContentGuard.screen, without HTTP): drop, fence or redact."""
    if not passages:
        return [], []
    items = [("content", CheckInput(text=p.text, direction="input")) for p in passages]
    verdict = checker.check_many(items, policy, "content")  # type: ignore[arg-type]
    kept, actions = [], []
    for passage, item in zip(passages, verdict.items, strict=True):
        if item.decision == "allow":
            kept.append(passage)
            continue
        action = _ACTIONS.get(item.decision, "fenced")
        actions.append(action)
        if action == "fenced":
            kept.append(dataclasses.replace(passage, fenced=True))
        elif action == "redacted":
            kept.append(dataclasses.replace(passage, text=item.text or passage.text))
    return kept, actions


def gateway_check_body(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `messages` of the gateway's one input check (GuardrailsClient.check_input) for RAG's request."""
    body = copy.deepcopy(messages)
    marks = take_context_marks(body)  # honoured: RAG presents the service token
    return [
        {"role": s.role, "content": s.text, "context": True} if s.context else {"role": s.role, "content": s.text}
        for s in segments(body, marks)
    ]


def judge(checker: Checker, policy: Policy, check: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The decision on the check request, and its findings, each naming the role and part it came from."""
    items = chat_items([(m["role"], m["content"], bool(m.get("context"))) for m in check], policy)
    verdict = checker.check_many(items, policy, "input")
    findings = [
        {**f.as_dict(), "role": check[i.index]["role"], "context": bool(check[i.index].get("context"))}
        for i in verdict.items
        for f in i.findings
    ]
    return verdict.decision, findings


def rag_requests(checker: Checker, policy: Policy, docs: Path = ROOT / "docs") -> dict[str, Any]:
    """Share of the platform's own RAG requests the gateway's input check would block, with the reasons."""
    settings = RagSettings()
    index = DocsIndex(docs, Embedder(batch_size=32, threads=1), settings)
    template = load_default("rag-answer", "2")
    blocked, flagged, rows, passage_actions = 0, 0, [], Counter()
    asked = questions()
    for q in asked:
        passages, actions = screen(checker, policy, index.retrieve(q["question"], settings.default_top_k))
        passage_actions.update(actions)
        blocks, _ = context_blocks(passages, settings.max_context_chars)
        check = gateway_check_body(template.messages_with_context(blocks, question=q["question"]))
        decision, findings = judge(checker, policy, check)
        blocked += decision == "block"
        flagged += decision == "flag"
        if decision != "allow":
            rows.append({"id": q["id"], "question": q["question"], "decision": decision, "findings": findings})
    return {
        "n": len(asked),
        "chunks": len(index.passages),
        "blocked": round(blocked / len(asked), 4),
        "flagged": round(flagged / len(asked), 4),
        "passages_screened": dict(passage_actions),
        "not_allowed": rows,
        "template": template.id,
        "policy": policy.name,
    }


def rag_markdown(r: dict[str, Any]) -> list[str]:
    """The results section."""
    lines = [
        "## The platform's own RAG requests, as the gateway checks them (benign: should pass)",
        "",
        f"{r['n']} questions about the platform (bench/data/rag_platform, written from the headings of docs/; the "
        "first two are the load run's, whose 'How are models promoted to production?' the reverted harmful-request "
        f"model blocked: not blind), each through RAG's retrieval over docs/ ({r['chunks']} chunks), its content "
        f"check, {r['template']} and the gateway's one input check (bench/guardrails_rag.py), policy "
        f"`{r['policy']}`: **{r['blocked']:.3f} blocked**, {r['flagged']:.3f} flagged. Passages the content check "
        f"did not simply allow: {r['passages_screened'] or 'none'}.",
        "",
    ]
    for row in r["not_allowed"]:
        why = "; ".join(f"{f['role']}{' (context)' if f['context'] else ''}: {f['reason']}" for f in row["findings"])
        lines.append(f"- {row['decision']}: {row['question']} ({why})")
    return [*lines, ""] if r["not_allowed"] else lines
