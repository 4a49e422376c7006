"""Cut the rag_xquad dev fixture from the shared XQuAD copy (see README.md); run once, output committed.

python bench/data/rag_xquad/make_fixture.py /work/shared/datasets/benign
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IN_RAG_DEV = {"Normans", "Computational_complexity_theory"}  # already in bench/data/rag_dev (SQuAD 2.0 dev)


def main(source: Path) -> None:
    """English paragraphs joined per article; every English question with its article as the gold document."""
    paragraphs = [json.loads(line) for line in (source / "xquad_paragraphs.jsonl").open(encoding="utf-8")]
    questions = [json.loads(line) for line in (source / "xquad_questions.jsonl").open(encoding="utf-8")]
    articles: dict[str, list[tuple[int, str]]] = {}
    for p in paragraphs:
        if p["lang"] == "en" and p["title"] not in IN_RAG_DEV:
            articles.setdefault(p["title"], []).append((p["paragraph_index"], p["text"]))
    with (HERE / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for title, parts in articles.items():
            text = "\n\n".join(t for _, t in sorted(parts))
            row = {"id": title, "title": title.replace("_", " "), "text": text}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (HERE / "questions.jsonl").open("w", encoding="utf-8") as out:
        for q in questions:
            if q["lang"] == "en" and q["title"] in articles:
                row = {"id": q["id"], "question": q["text"], "gold_doc_ids": [q["title"]]}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
