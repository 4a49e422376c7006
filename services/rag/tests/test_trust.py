"""Attribution, calibrated abstention and dedup across runs (issue 16): real embedder, real Qdrant local mode."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.rag.abstention import Abstainer, evidence
from services.rag.attribution import Attributor, StreamAttributor, split_sentences, with_markers
from services.rag.catalog import Catalog
from services.rag.embedder import Embedder
from services.rag.ingest import IngestionPipeline, Progress, RawDocument
from services.rag.retrieval import Retriever
from services.rag.settings import RagSettings
from services.rag.sparse import BM25Encoder
from services.rag.store import VectorStore
from services.rag.tests.fake_gateway import FakeGatewayState
from services.rag.tests.test_api import ingest, new_collection

DEV = Path(__file__).resolve().parents[3] / "bench" / "data" / "rag_dev"
DEFAULTS = RagSettings()
PASSAGES = [
    "Normandy is a region in northern France. The Duchy of Normandy was founded in 911 by Rollo.",
    "A Turing machine is a mathematical model of a general computing machine. It manipulates symbols on a tape.",
]


@pytest.fixture(scope="module")
def attributor(embedder: Embedder) -> Attributor:
    """Attribution with the calibrated defaults."""
    return Attributor(embedder, DEFAULTS.attribution_threshold, DEFAULTS.attribution_weight)


# ---- attribution ---------------------------------------------------------------------------------
def test_sentences_split_and_join_back() -> None:
    text = "Normandy is in France. It was founded in 911!\n- Rollo led it? Yes"
    parts = split_sentences(text)
    assert [s for s, _ in parts] == ["Normandy is in France.", "It was founded in 911!", "- Rollo led it?", "Yes"]
    assert "".join(s + sep for s, sep in parts) == text
    assert with_markers("Normandy is in France.", [1, 2]) == "Normandy is in France [1][2]."


def test_each_sentence_is_cited_to_the_passage_that_supports_it(attributor: Attributor) -> None:
    answer = (
        "The Duchy of Normandy was founded by Rollo in 911 [2]. "
        "A Turing machine is a mathematical model of a computing machine. "
        "The Normans grew tulips in the Netherlands. Yes."
    )
    out = attributor.attribute(answer, PASSAGES)
    # The model's own (wrong) marker is replaced by the attributed one.
    assert out.answer == (
        "The Duchy of Normandy was founded by Rollo in 911 [1]. "
        "A Turing machine is a mathematical model of a computing machine [2]. "
        "The Normans grew tulips in the Netherlands. Yes."
    )
    first, second, made_up, short = out.sentences
    assert first.citations == [1] and second.citations == [2] and made_up.citations == []
    assert first.support >= DEFAULTS.attribution_threshold > made_up.support
    assert short.claim is False  # "Yes." states nothing: not counted
    assert out.unsupported == [2] and out.groundedness == pytest.approx(2 / 3, abs=1e-3)
    meta = out.meta()
    assert meta["unsupported"] == [2] and meta["sentences"][0]["scores"][0]["number"] == 1
    assert {"support", "cosine", "lexical"} <= set(meta["sentences"][0]["scores"][0])


def test_a_paraphrase_is_supported_through_the_embedding(attributor: Attributor) -> None:
    out = attributor.attribute("Rollo established the Norman duchy in the year 911.", PASSAGES)
    assert out.sentences[0].citations == [1]


def test_streamed_attribution_equals_the_whole_answers(attributor: Attributor) -> None:
    answer = "Normandy is a region in France. A Turing machine manipulates symbols on a tape. Pigs can fly."
    whole = attributor.attribute(answer, PASSAGES)
    tracker = StreamAttributor(attributor, PASSAGES)
    seen: list[int] = []
    for i in range(0, len(answer), 3):  # tokens arrive a few characters at a time
        seen.extend(s.index for s in tracker.feed(answer[i : i + 3]))
    assert seen == [0, 1]  # each sentence is attributed as soon as the next one starts
    last, final = tracker.finish()
    assert [s.index for s in last] == [2]
    assert final.answer == whole.answer and final.unsupported == whole.unsupported == [2]


# ---- abstention ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dev_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[tuple[Retriever, str]]:
    """The first 20 paragraphs of the dev corpus (Normans) in a local Qdrant collection."""
    store = VectorStore(None, tmp_path_factory.mktemp("trust") / "qdrant")
    store.ensure_catalog()
    catalog = Catalog(store, "public")
    record = catalog.create_collection("t", "dev", "", embedder.dimension)
    pipeline = IngestionPipeline(embedder, BM25Encoder(), catalog, chunk_size=256, chunk_overlap=32, min_chars=1,
                                 max_chars=100_000)  # fmt: skip
    corpus = [json.loads(line) for line in (DEV / "corpus.jsonl").read_text().splitlines()[:20]]
    pipeline.run(record, [RawDocument(d["text"], d["id"], d["title"]) for d in corpus], Progress())
    yield Retriever(embedder, BM25Encoder(), store), record["qdrant_collection"]
    store.close()


def _decide(index: tuple[Retriever, str], question: str) -> dict[str, Any] | None:
    retriever, qname = index
    passages = retriever.retrieve(qname, question, top_k=5, score_threshold=DEFAULTS.default_score_threshold).passages
    rule = Abstainer(DEFAULTS.abstain_threshold, DEFAULTS.abstain_weight)
    return rule.decide(question, [p.relevance for p in passages], [p.text for p in passages])


@pytest.mark.parametrize(
    "question", ["qwzx vbnm plokij", "What is the capital of Australia?", "How do I reset my router password?"]
)
def test_gibberish_and_off_corpus_questions_abstain(dev_index: tuple[Retriever, str], question: str) -> None:
    decision = _decide(dev_index, question)
    assert decision is not None and decision["score"] < DEFAULTS.abstain_threshold


def test_answerable_questions_are_answered(dev_index: tuple[Retriever, str]) -> None:
    questions = [json.loads(line) for line in (DEV / "answerable.jsonl").read_text().splitlines()[:20]]
    answered = [q["question"] for q in questions if _decide(dev_index, q["question"]) is None]
    assert len(answered) >= 18, set(q["question"] for q in questions) - set(answered)


def test_evidence_combines_dense_and_lexical() -> None:
    ev = evidence("When was Normandy founded?", [0.6, 0.3, 0.3], ["Normandy was founded in 911."])
    assert ev.lexical_coverage == 1.0 and ev.top_relevance == 0.6 and ev.margin == pytest.approx(0.3)
    assert Abstainer(0.45, 0.5).decide("anything", [], []) == {
        "reason": "no_passages",
        "score": 0.0,
        "threshold": 0.45,
        "weight": 0.5,
        "top_relevance": 0.0,
        "lexical_coverage": 0.0,
        "margin": 0.0,
    }
    assert Abstainer(0.45, 0.5, enabled=False).decide("qwzx", [], []) is None


# ---- dedup across runs ---------------------------------------------------------------------------
TEXT_A = "The Duchy of Normandy was founded in 911 when Rollo swore fealty to King Charles III of West Francia."
TEXT_B = "A Turing machine is a mathematical model of a general computing machine that manipulates symbols."


def _pipeline(embedder: Embedder, catalog: Catalog, mode: str) -> IngestionPipeline:
    return IngestionPipeline(embedder, BM25Encoder(), catalog, chunk_size=256, chunk_overlap=32, min_chars=1,
                             max_chars=100_000, dedup=mode)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def fresh(tmp_path: Path, embedder: Embedder) -> Iterator[tuple[Catalog, dict[str, Any]]]:
    store = VectorStore(None, tmp_path / "qdrant")
    store.ensure_catalog()
    catalog = Catalog(store, "public")
    yield catalog, catalog.create_collection("t", "dups", "", embedder.dimension)
    store.close()


def _run(pipeline: IngestionPipeline, record: dict[str, Any], docs: list[tuple[str, str]]) -> dict[str, dict]:
    progress = Progress()
    pipeline.run(record, [RawDocument(text, doc_id) for doc_id, text in docs], progress)
    return {r["doc_id"]: r for r in progress.results}


def test_same_text_under_a_new_id_in_a_later_job_is_skipped(
    embedder: Embedder, fresh: tuple[Catalog, dict[str, Any]]
) -> None:
    catalog, record = fresh
    pipeline = _pipeline(embedder, catalog, "skip")
    _run(pipeline, record, [("dupA", TEXT_A), ("other", TEXT_B)])
    # Whitespace differs: the hash is of the normalised text.
    later = _run(pipeline, record, [("dupC", "  " + TEXT_A.replace(" ", "  ") + "\n"), ("dupD", TEXT_A)])
    assert later["dupC"] == {"doc_id": "dupC", "status": "duplicate", "duplicate_of": "dupA", "linked": False,
                             "chunks": 0}  # fmt: skip
    assert later["dupD"]["duplicate_of"] == "dupA"  # not "dupC": a copy in the same job points at the original
    hits = Retriever(embedder, BM25Encoder(), catalog.store).retrieve(record["qdrant_collection"], "Rollo 911", top_k=5)
    assert [p.doc_id for p in hits.passages] == ["dupA", "other"]  # one copy, not dupA, dupC, dupA...
    assert catalog.get_document("t", "dups", "dupC") is None
    assert catalog.refresh_stats(record)["documents"] == 2


def test_link_mode_records_the_new_id_pointing_at_the_existing_chunks(
    embedder: Embedder, fresh: tuple[Catalog, dict[str, Any]]
) -> None:
    catalog, record = fresh
    pipeline = _pipeline(embedder, catalog, "link")
    _run(pipeline, record, [("dupA", TEXT_A)])
    later = _run(pipeline, record, [("dupC", TEXT_A)])
    assert later["dupC"]["status"] == "duplicate" and later["dupC"]["linked"] is True
    linked = catalog.get_document("t", "dups", "dupC")
    assert linked is not None and linked["status"] == "duplicate" and linked["duplicate_of"] == "dupA"
    assert _run(pipeline, record, [("dupC", TEXT_A)])["dupC"]["duplicate_of"] == "dupA"  # idempotent


def test_a_document_replaced_by_a_copy_of_another_loses_its_old_version(
    embedder: Embedder, fresh: tuple[Catalog, dict[str, Any]]
) -> None:
    catalog, record = fresh
    pipeline = _pipeline(embedder, catalog, "skip")
    _run(pipeline, record, [("dupA", TEXT_A), ("other", TEXT_B)])
    assert _run(pipeline, record, [("other", TEXT_A)])["other"]["duplicate_of"] == "dupA"
    hits = Retriever(embedder, BM25Encoder(), catalog.store).retrieve(record["qdrant_collection"], "Turing", top_k=5)
    assert [p.doc_id for p in hits.passages] == ["dupA"]


def test_off_mode_indexes_the_copy_again(embedder: Embedder, fresh: tuple[Catalog, dict[str, Any]]) -> None:
    catalog, record = fresh
    pipeline = _pipeline(embedder, catalog, "off")
    _run(pipeline, record, [("dupA", TEXT_A)])
    assert _run(pipeline, record, [("dupC", TEXT_A)])["dupC"]["status"] == "indexed"


# ---- through the service (FAKE gateway) ----------------------------------------------------------
def test_answer_carries_attribution_and_groundedness(team_a: httpx.Client) -> None:
    name = new_collection(team_a)
    ingest(team_a, name, [{"id": "cats", "text": "# Cats\n\nCats eat fish and mice. Cats purr when content."}])
    out = team_a.post(f"/v1/collections/{name}/answer", json={"question": "What do cats eat?"}).json()
    assert out["answer"] == "Cats eat fish [1]." and out["abstained"] is False
    assert out["groundedness"] == 1.0 and out["attribution"]["unsupported"] == []
    assert out["attribution"]["sentences"][0]["citations"] == [1] and out["citations"][0]["cited"] is True
    with team_a.stream("POST", f"/v1/collections/{name}/answer", json={"question": "What do cats eat?",
                                                                        "stream": True}) as resp:  # fmt: skip
        events = [json.loads(ln[5:]) for ln in resp.iter_lines() if ln.startswith("data:") and ln != "data: [DONE]"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "citations" and kinds[-1] == "done" and kinds.count("attribution") == 1
    assert kinds.index("attribution") > kinds.index("delta")  # sent as the sentence completes, before `done`
    assert events[-1]["answer"] == "Cats eat fish [1]." and events[-1]["groundedness"] == 1.0


def test_gibberish_abstains_without_calling_the_model(
    team_a: httpx.Client, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    name = new_collection(team_a)
    ingest(team_a, name, [{"id": "cats", "text": "# Cats\n\nCats eat fish and mice. Cats purr when content."}])
    for question in ("qwzx vbnm plokij", "What is the capital of Australia?"):
        out = team_a.post(f"/v1/collections/{name}/answer", json={"question": question}).json()
        assert out["not_found"] is True and out["abstained"] is True, out
        assert out["abstention"]["score"] < out["abstention"]["threshold"]
    assert fake_gateway[1].chat_calls == []
    forced = team_a.post(f"/v1/collections/{name}/answer", json={"question": "qwzx vbnm plokij", "abstain": False})
    assert forced.json()["abstained"] is False


def test_a_collection_can_carry_its_own_abstention_threshold(
    team_a: httpx.Client, fake_gateway: tuple[str, FakeGatewayState]
) -> None:
    """A broad corpus lifts the evidence of off-topic questions too (bench/rag_trust.py, rag_xquad): its collection
    gets a stricter threshold than the service's, and only that collection uses it."""
    cats = [{"id": "cats", "text": "# Cats\n\nCats eat fish and mice. Cats purr when content."}]
    strict = f"strict-{uuid.uuid4().hex[:10]}"
    made = team_a.post("/v1/collections", json={"name": strict, "abstain_threshold": 0.99})
    assert made.status_code == 201 and made.json()["abstain_threshold"] == 0.99
    assert team_a.post("/v1/collections", json={"name": "x-" + strict, "abstain_threshold": 1.5}).status_code == 400
    plain = new_collection(team_a)
    for name in (strict, plain):
        ingest(team_a, name, cats)
    question = {"question": "What do cats eat?"}
    out = team_a.post(f"/v1/collections/{strict}/answer", json=question).json()
    assert out["abstained"] is True and out["abstention"]["threshold"] == 0.99
    assert team_a.get(f"/v1/collections/{strict}").json()["abstain_threshold"] == 0.99  # kept through the ingest
    assert team_a.post(f"/v1/collections/{plain}/answer", json=question).json()["abstained"] is False
    assert len(fake_gateway[1].chat_calls) == 1  # only the plain collection's answer called the model
