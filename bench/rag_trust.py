"""Calibration of RAG's abstention and citation attribution on the committed dev set (bench/data/rag_dev).

    .venv/bin/python bench/rag_trust.py

Ingests the dev corpus (87 SQuAD 2.0 paragraphs, see bench/data/rag_dev/README.md) with the service's own
pipeline into a fresh Qdrant local folder, then:

1. **Abstention.** Retrieves (hybrid, top 5, no threshold) for every answerable question, every unanswerable one
   (gibberish, off-corpus) and SQuAD's on-topic impossible questions, computes the evidence the service decides
   on (top cosine, lexical coverage, margin), and for each weight of the combined score picks the threshold of
   best balanced accuracy (answerable answered vs gibberish/off-corpus abstained; the middle of a tie, and
   answering >= 95 % of the answerable). The weight with the best sum wins. The table also shows the old rule
   (cosine >= 0.25) and the curve of the chosen weight (with the on-topic impossible questions).
2. **Attribution.** Scores claims against passages: verbatim answer sentences of the gold paragraph and hand
   paraphrases (supported), sentences of other paragraphs and hand-written hallucinations scored against the
   passages retrieved for them (unsupported); fits weight and threshold by balanced accuracy, and reports how
   often the best-scoring passage of a supported claim is its gold paragraph.

3. **Per collection?** The same evidence on a second corpus, bench/data/rag_xquad (46 XQuAD Wikipedia articles,
   1,164 answerable questions), with the same gibberish and off-corpus questions: how the shipped rule does there,
   its curve, and the threshold the same calibration would pick for that collection alone. (Some "off-corpus"
   questions of the dev set are answered by XQuAD's articles - photosynthesis by "Chloroplast", vaccines by
   "Immune system": off-corpus is relative to a collection, and the table lists the questions answered there.)

Writes bench/results/rag_trust.{json,md}.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "libs")]

import numpy as np  # noqa: E402

from services.rag.abstention import evidence  # noqa: E402
from services.rag.app import build_embedder, build_pipeline  # noqa: E402
from services.rag.attribution import Attributor, split_sentences  # noqa: E402
from services.rag.catalog import Catalog  # noqa: E402
from services.rag.ingest import Progress, RawDocument  # noqa: E402
from services.rag.retrieval import Passage, Retriever  # noqa: E402
from services.rag.settings import RagSettings  # noqa: E402
from services.rag.sparse import BM25Encoder  # noqa: E402
from services.rag.store import VectorStore  # noqa: E402

DATA = REPO / "bench" / "data" / "rag_dev"
XQUAD = REPO / "bench" / "data" / "rag_xquad"
OUT = REPO / "bench" / "results"
WEIGHTS = [round(w, 2) for w in np.linspace(0, 1, 11)]
MIN_ANSWERED = 0.95


def load(name: str) -> list[dict[str, Any]]:
    """One JSONL file of the dev set."""
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def calibrate_abstention(
    rows: list[dict[str, Any]], default_threshold: float, curve_weight: float | None = None
) -> dict[str, Any]:
    """Per weight: the threshold that keeps >= 95 % of answerable questions and abstains on the most others."""
    answerable = [r for r in rows if r["kind"] == "answerable"]
    unanswerable = [r for r in rows if r["kind"] in ("gibberish", "off_corpus")]

    def combined(r: dict[str, Any], w: float) -> float:
        return w * r["top_relevance"] + (1 - w) * r["lexical_coverage"]

    table = []
    for w in WEIGHTS:
        pos = [combined(r, w) for r in answerable]
        neg = [combined(r, w) for r in unanswerable]
        # Best balanced accuracy; of the thresholds that reach it, the middle one (robust to a new corpus
        # shifting the scores a little either way), provided it answers >= MIN_ANSWERED of the answerable.
        grid = [float(t) for t in np.round(np.arange(0.05, 0.96, 0.01), 2)]
        accuracy = {t: 0.5 * (np.mean([s >= t for s in pos]) + np.mean([s < t for s in neg])) for t in grid}
        allowed = [t for t in grid if np.mean([s >= t for s in pos]) >= MIN_ANSWERED]
        top = max(accuracy[t] for t in allowed)
        ties = [t for t in allowed if accuracy[t] == top]
        threshold = ties[len(ties) // 2]
        table.append(
            {
                "weight": w,
                "auc": round(auc(pos, neg), 4),
                "threshold": threshold,
                "answered": round(float(np.mean([s >= threshold for s in pos])), 4),
                "abstained_unanswerable": round(float(np.mean([s < threshold for s in neg])), 4),
            }
        )
    best = max(table, key=lambda t: (t["answered"] + t["abstained_unanswerable"], t["auc"]))
    margin_auc = auc([r["margin"] for r in answerable], [r["margin"] for r in unanswerable])
    old = {
        "rule": f"top_relevance >= {default_threshold}",
        "answered": round(float(np.mean([r["top_relevance"] >= default_threshold for r in answerable])), 4),
        "abstained_unanswerable": round(
            float(np.mean([r["top_relevance"] < default_threshold for r in unanswerable])), 4
        ),
    }
    curve = []
    for t in np.round(np.arange(0.2, 0.81, 0.05), 2):
        row = {"threshold": float(t)}
        for kind in ("answerable", "gibberish", "off_corpus", "on_topic_impossible"):
            scores = [
                combined(r, best["weight"] if curve_weight is None else curve_weight) for r in rows if r["kind"] == kind
            ]
            if not scores:
                continue
            key = "answered" if kind == "answerable" else f"abstained_{kind}"
            row[key] = round(float(np.mean([(s >= t) if kind == "answerable" else (s < t) for s in scores])), 4)
        curve.append(row)
    return {"table": table, "chosen": best, "margin_auc": round(margin_auc, 4), "old_rule": old, "curve": curve}


def second_collection(embedder: Any, settings: RagSettings, store_dir: Path) -> dict[str, Any]:
    """The shipped abstention rule on bench/data/rag_xquad (its own questions + the dev set's unanswerable ones)."""
    corpus = [json.loads(line) for line in (XQUAD / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line]
    questions = [json.loads(line) for line in (XQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    store = VectorStore(None, store_dir)
    store.ensure_catalog()
    catalog = Catalog(store, "public")
    record = catalog.create_collection("bench", "xquad", "", embedder.dimension)
    build_pipeline(settings, embedder, catalog).run(
        record, [RawDocument(d["text"], d["id"], d["title"]) for d in corpus], Progress()
    )
    retriever = Retriever(embedder, BM25Encoder(), store)
    rows = []
    for kind, q in [("answerable", q) for q in questions if q["question"]] + [
        (q["kind"], q) for q in load("unanswerable.jsonl")
    ]:
        passages = retriever.retrieve(
            record["qdrant_collection"], q["question"], strategy="hybrid", top_k=settings.default_top_k
        ).passages
        ev = evidence(q["question"], [p.relevance for p in passages], [p.text for p in passages])
        rows.append({"id": q.get("id"), "kind": kind, "question": q["question"]} | ev.as_dict())
    store.close()
    w, t = settings.abstain_weight, settings.abstain_threshold

    def score(r: dict[str, Any]) -> float:
        return w * r["top_relevance"] + (1 - w) * r["lexical_coverage"]

    shipped = {
        "rule": f"{w} * top_relevance + {round(1 - w, 2)} * lexical_coverage >= {t}",
        **{
            ("answered" if k == "answerable" else f"abstained_{k}"): round(
                float(np.mean([(score(r) >= t) == (k == "answerable") for r in rows if r["kind"] == k])), 4
            )
            for k in ("answerable", "gibberish", "off_corpus")
        },
        "off_corpus_answered": [r["question"] for r in rows if r["kind"] == "off_corpus" and score(r) >= t],
    }
    alone = calibrate_abstention(rows, 0.25, curve_weight=w)
    at_w = next(x for x in alone["table"] if x["weight"] == w)
    return {
        "fixture": "bench/data/rag_xquad",
        "counts": {k: sum(r["kind"] == k for r in rows) for k in ("answerable", "gibberish", "off_corpus")},
        "shipped": shipped,
        "own_threshold_at_shipped_weight": at_w,
        "own_best": alone["chosen"],
        "curve": alone["curve"],  # at the shipped weight
    }


def claim_rows(
    retriever: Retriever, qname: str, attributor: Attributor, corpus: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """(cosine, lexical) of every calibration claim against its passages, with the gold passage's rank."""
    answerable = {q["gold_doc_ids"][0]: q for q in load("answerable.jsonl")}
    claims: list[tuple[str, bool, str | None, str]] = []  # claim, supported, gold doc, query for the passages
    for doc_id, q in answerable.items():
        sentence = next((s for s, _ in split_sentences(corpus[doc_id]["text"]) if q["reference_answer"] in s), None)
        if sentence:
            claims.append((sentence, True, doc_id, q["question"]))
    docs = sorted(answerable)
    for i, doc_id in enumerate(docs):  # a sentence of another paragraph, scored against this question's passages
        other = corpus[docs[(i + 7) % len(docs)]]["text"]
        claims.append((split_sentences(other)[0][0], False, None, answerable[doc_id]["question"]))
    hand = {c["claim"] for c in load("claims.jsonl")}
    for c in load("claims.jsonl"):
        query = answerable[c["doc_id"]]["question"] if c["supported"] else c["claim"]
        claims.append((c["claim"], c["supported"], c.get("doc_id"), query))
    rows = []
    for claim, supported, gold, query in claims:
        passages: list[Passage] = retriever.retrieve(qname, query, strategy="hybrid", top_k=5).passages
        ids = [p.doc_id for p in passages]
        if supported and gold not in ids:
            continue  # attribution cannot cite what retrieval missed; counted separately in the retrieval eval
        if not supported and any(p.text.find(claim) >= 0 for p in passages):
            continue  # the "other" sentence happens to be retrieved: it is supported after all
        index = attributor.prepare([p.text for p in passages])
        scored = attributor.score(index, 0, claim)  # threshold -1: every passage "cited", so all are scored
        numbers = sorted(scored.scores)
        rows.append(
            {
                "claim": claim,
                "supported": supported,
                "cosine": [round(scored.scores[n]["cosine"], 4) for n in numbers],
                "lexical": [round(scored.scores[n]["lexical"], 4) for n in numbers],
                "gold_number": ids.index(gold) + 1 if gold in ids else None,
                "source": "hand" if claim in hand else "auto",
            }
        )
    return rows


def calibrate_attribution(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per weight: AUC and the threshold of best balanced accuracy (a claim's score: its best passage's)."""
    table = []
    for w in WEIGHTS:
        scores = [max(w * c + (1 - w) * lx for c, lx in zip(r["cosine"], r["lexical"], strict=True)) for r in rows]
        labels = [r["supported"] for r in rows]
        pos = [s for s, y in zip(scores, labels, strict=True) if y]
        neg = [s for s, y in zip(scores, labels, strict=True) if not y]
        best_t, best_ba = 0.0, -1.0
        for t in np.round(np.arange(0.2, 0.96, 0.01), 2):
            ba = 0.5 * (np.mean([s >= t for s in pos]) + np.mean([s < t for s in neg]))
            if ba > best_ba:
                best_t, best_ba = float(t), float(ba)
        gold_first = []
        for r in rows:
            if r["supported"]:
                per = [w * c + (1 - w) * lx for c, lx in zip(r["cosine"], r["lexical"], strict=True)]
                gold_first.append(int(np.argmax(per)) + 1 == r["gold_number"])
        paraphrases = [s for s, r in zip(scores, rows, strict=True) if r["supported"] and r["source"] == "hand"]
        table.append(
            {
                "weight": w,
                "auc": round(auc(pos, neg), 4),
                "threshold": best_t,
                "paraphrase_recall": round(float(np.mean([s >= best_t for s in paraphrases])), 4),
                "balanced_accuracy": round(best_ba, 4),
                "supported_recall": round(float(np.mean([s >= best_t for s in pos])), 4),
                "unsupported_rejected": round(float(np.mean([s < best_t for s in neg])), 4),
                "best_passage_is_gold": round(float(np.mean(gold_first)), 4),
            }
        )
    chosen = max(table, key=lambda t: (t["balanced_accuracy"], t["auc"]))
    return {
        "table": table,
        "chosen": chosen,
        "claims": {
            "supported": sum(r["supported"] for r in rows),
            "unsupported": sum(not r["supported"] for r in rows),
        },
    }


def main() -> None:
    """Ingest, measure, calibrate, write the results."""
    corpus = {d["id"]: d for d in load("corpus.jsonl")}
    with tempfile.TemporaryDirectory() as tmp:
        settings = RagSettings(data_dir=tmp, qdrant_url=None, log_json=False)
        embedder = build_embedder(settings)
        store = VectorStore(None, Path(tmp) / "qdrant")
        store.ensure_catalog()
        catalog = Catalog(store, "public")
        record = catalog.create_collection("bench", "dev", "", embedder.dimension)
        pipeline = build_pipeline(settings, embedder, catalog)
        t0 = time.perf_counter()
        docs = [RawDocument(d["text"], d["id"], d["title"]) for d in corpus.values()]
        pipeline.run(record, docs, Progress())
        ingest_s = time.perf_counter() - t0
        retriever = Retriever(embedder, BM25Encoder(), store)
        qname = record["qdrant_collection"]
        sets = [("answerable", load("answerable.jsonl")), ("unanswerable", load("unanswerable.jsonl"))]
        sets.append(("on_topic_impossible", load("on_topic_impossible.jsonl")))
        rows, latencies = [], []
        for default_kind, questions in sets:
            for q in questions:
                t = time.perf_counter()
                result = retriever.retrieve(qname, q["question"], strategy="hybrid", top_k=settings.default_top_k)
                passages = result.passages
                ev = evidence(q["question"], [p.relevance for p in passages], [p.text for p in passages])
                latencies.append(time.perf_counter() - t)
                kind = q.get("kind", default_kind)
                rows.append({"id": q["id"], "kind": kind, "question": q["question"]} | ev.as_dict())
        abstention = calibrate_abstention(rows, 0.25)
        attributor = Attributor(embedder, threshold=-1.0, weight=0.5, max_citations=100)
        t = time.perf_counter()
        claims = claim_rows(retriever, qname, attributor, corpus)
        claim_s = (time.perf_counter() - t) / max(1, len(claims))
        attribution = calibrate_attribution(claims)
        chosen = attribution["chosen"]
        timed = Attributor(embedder, chosen["threshold"], chosen["weight"])
        answer_ms = []
        for q in load("answerable.jsonl")[:20]:
            passages = retriever.retrieve(qname, q["question"], strategy="hybrid", top_k=5).passages
            text = " ".join(s for s, _ in split_sentences(corpus[q["gold_doc_ids"][0]]["text"])[:3])
            t = time.perf_counter()
            timed.attribute(text, [p.text for p in passages])
            answer_ms.append((time.perf_counter() - t) * 1000)
        store.close()
        per_collection = second_collection(embedder, settings, Path(tmp) / "qdrant-xquad")
    report = {
        "dataset": "bench/data/rag_dev (SQuAD 2.0 dev sample: 87 paragraphs; see its README)",
        "machine": f"{platform.machine()} {platform.system()}, {embedder.workers} embedding session(s); "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "ingest_seconds": round(ingest_s, 2),
        "retrieval_ms_p50": round(float(np.median(latencies)) * 1000, 2),
        "counts": {k: sum(r["kind"] == k for r in rows) for k in sorted({r["kind"] for r in rows})},
        "abstention": abstention,
        "attribution": attribution,
        "attribution_ms_per_claim": round(claim_s * 1000, 1),
        "attribution_ms_per_answer_p50": round(float(np.median(answer_ms)), 1),
        "per_collection": per_collection,
        "questions": rows,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rag_trust.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (OUT / "rag_trust.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def markdown(r: dict[str, Any]) -> str:
    """The human-readable calibration tables."""
    ab, at = r["abstention"], r["attribution"]
    lines = [
        "# RAG trust calibration: abstention and citation attribution",
        "",
        f"Dev set: {r['dataset']}; {r['counts']}. Machine: {r['machine']}. "
        f"Ingest {r['ingest_seconds']} s, retrieval p50 {r['retrieval_ms_p50']} ms. Script: `bench/rag_trust.py`.",
        "",
        "## Abstention (answer when `w*top_relevance + (1-w)*lexical_coverage >= threshold`)",
        "",
        f"Old rule `{ab['old_rule']['rule']}`: answered {ab['old_rule']['answered']:.0%} of answerable, "
        f"abstained on {ab['old_rule']['abstained_unanswerable']:.0%} of gibberish + off-corpus.",
        f"Margin (top cosine minus mean of the rest) alone: AUC {ab['margin_auc']}.",
        "",
        "| weight w | AUC | threshold (best balanced accuracy, answers >= 95 %) | answered "
        "| abstained (gibberish + off-corpus) |",
        "|---|---|---|---|---|",
    ]
    for t in ab["table"]:
        mark = " **(chosen)**" if t is ab["chosen"] or t == ab["chosen"] else ""
        lines.append(
            f"| {t['weight']}{mark} | {t['auc']} | {t['threshold']} | {t['answered']:.0%} | "
            f"{t['abstained_unanswerable']:.0%} |"
        )
    lines += [
        "",
        f"Curve at w = {ab['chosen']['weight']}:",
        "",
        "| threshold | answered (answerable) | abstained gibberish | abstained off-corpus "
        "| abstained on-topic impossible |",
        "|---|---|---|---|---|",
    ]
    for c in ab["curve"]:
        lines.append(
            f"| {c['threshold']} | {c['answered']:.0%} | {c['abstained_gibberish']:.0%} | "
            f"{c['abstained_off_corpus']:.0%} | {c['abstained_on_topic_impossible']:.0%} |"
        )
    pc = r["per_collection"]
    sh, own = pc["shipped"], pc["own_threshold_at_shipped_weight"]
    lines += [
        "",
        f"### A second collection: {pc['fixture']} ({pc['counts']})",
        "",
        f"The shipped rule (`{sh['rule']}`, calibrated on rag_dev) there: answered {sh['answered']:.0%} of the "
        f"answerable questions, abstained on {sh['abstained_gibberish']:.0%} of gibberish and "
        f"{sh['abstained_off_corpus']:.0%} of the off-corpus questions. Calibrated on this collection alone, at the "
        f"same weight the threshold would be {own['threshold']} (answered {own['answered']:.0%}, abstained "
        f"{own['abstained_unanswerable']:.0%}); best weight there: {pc['own_best']['weight']} at "
        f"{pc['own_best']['threshold']}. Off-corpus questions it answered: {sh['off_corpus_answered'] or 'none'}.",
        "",
        f"Curve at the shipped weight {pc['shipped']['rule'].split(' ')[0]}:",
        "",
        "| threshold | answered (answerable) | abstained gibberish | abstained off-corpus |",
        "|---|---|---|---|",
    ]
    for c in pc["curve"]:
        lines.append(
            f"| {c['threshold']} | {c['answered']:.0%} | {c['abstained_gibberish']:.0%} | "
            f"{c['abstained_off_corpus']:.0%} |"
        )
    lines += [
        "",
        "## Attribution (sentence supported by a passage when `w*cosine + (1-w)*lexical >= threshold`)",
        "",
        f"Claims: {at['claims']}. Attributing a 3-sentence answer against 5 passages: p50 "
        f"{r['attribution_ms_per_answer_p50']} ms (embeds every passage sentence once, then each answer sentence).",
        "",
        "| weight w | AUC | threshold | balanced accuracy | supported recall | unsupported rejected "
        "| hand paraphrases supported | best passage = gold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in at["table"]:
        mark = " **(chosen)**" if t == at["chosen"] else ""
        lines.append(
            f"| {t['weight']}{mark} | {t['auc']} | {t['threshold']} | {t['balanced_accuracy']} | "
            f"{t['supported_recall']:.0%} | {t['unsupported_rejected']:.0%} | {t['paraphrase_recall']:.0%} | "
            f"{t['best_passage_is_gold']:.0%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
