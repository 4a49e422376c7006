"""Unit tests without HTTP: extraction, normalisation, chunking, sparse vectors, metrics."""

from __future__ import annotations

import itertools
import math

import pytest

from services.rag.chunking import chunk_text, split_sections
from services.rag.embedder import Embedder
from services.rag.evaluation import claims, parse_fraction, retrieval_metrics, token_f1
from services.rag.extract import DocumentError, decode_bytes, detect_format, extract, normalise, validate
from services.rag.sparse import BM25Encoder, token_id, tokenize


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF with `text` in Helvetica (built by hand: no PDF writer is a dependency)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def test_pdf_html_markdown_extraction() -> None:
    text, _ = extract(tiny_pdf("Otters hold hands."), "pdf")
    assert "Otters hold hands." in text
    html = "<html><head><title>T</title><style>p{}</style></head><body><h2>Sub</h2><p>One&amp;two</p>"
    html += "<script>alert(1)</script></body></html>"
    text, title = extract(html.encode(), "html")
    assert title == "T" and "## Sub" in text and "One&two" in text and "alert" not in text
    assert extract("# Heading\n\nbody", "markdown")[1] == "Heading"
    with pytest.raises(DocumentError, match="could not be read"):
        extract(b"%PDF-1.4 junk", "pdf")


def test_formats_encodings_and_validation() -> None:
    assert detect_format("text/markdown; charset=utf-8", None) == "markdown"
    assert detect_format(None, "a/b.HTM") == "html" and detect_format(None, None) == "text"
    with pytest.raises(DocumentError) as err:
        detect_format("image/png", None)
    assert err.value.code == "unsupported_type"
    assert decode_bytes("café".encode("cp1252")) == "café"
    assert decode_bytes(b"\xef\xbb\xbfhi") == "hi" and decode_bytes("hé".encode("utf-16")) == "hé"
    with pytest.raises(DocumentError):
        decode_bytes(b"\x00\x01\xff\xfe\x00\x9c")
    assert normalise("  a\r\n\r\n\r\n\r\nb \t\n\x07c  d  ") == "a\n\nb\nc d"
    assert normalise("e\u0301") == "\u00e9"  # NFC
    for text, code in [("", "empty_document"), ("abc", "document_too_short"), ("x" * 50, "document_too_long")]:
        with pytest.raises(DocumentError) as err:
            validate(text, 5, 40)
        assert err.value.code == code


def test_sections_follow_markdown_headings_not_code() -> None:
    md = "intro\n# A\ntext a\n## B\ntext b\n```\n# not a heading\n```\n# C\ntext c"
    assert [s for s, _ in split_sections(md)] == ["", "A", "A > B", "C"]


def test_chunks_fit_size_overlap_and_never_cross_sections(embedder: Embedder) -> None:
    sentences = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(80))
    md = f"# First\n\n{sentences}\n\n# Second\n\nShort closing section."
    chunks = chunk_text(md, embedder.count_tokens, size=64, overlap=16)
    assert all(c.tokens <= 64 for c in chunks) and chunks[-1].section == "Second"
    assert all(c.section == "First" for c in chunks[:-1]) and len(chunks) > 10
    # overlap: each chunk of the long section starts with the end of the previous one
    assert all(b.text.split(".")[0] in a.text for a, b in itertools.pairwise(chunks[:-1]))
    with pytest.raises(ValueError):
        chunk_text(md, embedder.count_tokens, size=32, overlap=32)
    long_word_run = "word " * 500
    pieces = chunk_text(long_word_run, embedder.count_tokens, size=50, overlap=0)
    assert all(p.tokens <= 50 for p in pieces) and len(pieces) >= 10


def test_bm25_vectors() -> None:
    enc = BM25Encoder()
    assert tokenize("The Cats are eating berries") == ["cat", "eating", "berry"]
    doc = enc.encode_document("cat cat cat dog")
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert weights[token_id("cat")] > weights[token_id("dog")] and doc.indices == sorted(doc.indices)
    assert weights[token_id("cat")] < 3 * weights[token_id("dog")]  # saturation
    assert enc.encode_query("cats and CATS").values == [1.0]


def test_retrieval_metrics_by_hand() -> None:
    m = retrieval_metrics(["x", "g1", "y", "g2"], {"g1", "g2"}, [1, 3])
    assert m["recall@1"] == 0 and m["recall@3"] == 0.5 and m["hit@3"] == 1 and m["mrr@10"] == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    assert m["ndcg@10"] == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    assert retrieval_metrics(["x"], {"g"}, [1])["ndcg@10"] == 0.0


def test_answer_measures() -> None:
    assert claims("Cats eat fish [1]. Dogs bark [2]! ok") == ["Cats eat fish .", "Dogs bark !"]
    assert parse_fraction("Score: 0.75") == 0.75 and parse_fraction("80%") == 0.8 and parse_fraction("7") is None
    assert token_f1("cats eat fish", "cats eat fish") == 1.0 and token_f1("dogs", "cats") == 0.0
