"""The CLI ingests a folder in-process (progress bar on stderr) and through a running service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from services.rag.tests.test_units import tiny_pdf

REPO = Path(__file__).resolve().parents[3]


def make_folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "intro.md").write_text("# Intro\n\nLLMOps is the practice of running language models in production.")
    (docs / "sub" / "gate.html").write_text("<h1>Gateway</h1><p>The gateway checks virtual keys and limits.</p>")
    (docs / "sub" / "paper.pdf").write_bytes(tiny_pdf("Retrieval augmented generation cites its sources."))
    (docs / "empty.txt").write_text("")
    (docs / "image.png").write_bytes(b"\x89PNG")  # not a supported type: not picked up
    return docs


def test_ingest_dir_in_process_then_readable_by_every_team(tmp_path: Path) -> None:
    docs = make_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'libs'}", "RAG_DATA_DIR": str(tmp_path / "data")}
    cmd = [sys.executable, "-m", "services.rag.cli", "ingest-dir", str(docs), "--collection", "llmops-docs"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"documents": 4, "chunks": 3, "indexed": 3, "failed": 1}
    assert summary["failed"][0]["doc_id"] == "empty.txt" and summary["team"] == "public"
    assert "4/4" in done.stderr  # the progress bar reached the end
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert json.loads(again.stdout)["counts"]["unchanged"] == 3


def test_ingest_dir_through_the_service(tmp_path: Path, rag_url: str) -> None:
    docs = make_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'libs'}"}
    cmd = [
        sys.executable,
        "-m",
        "services.rag.cli",
        "ingest-dir",
        str(docs),
        "--collection",
        "cli-docs",
        "--url",
        rag_url,
        "--api-key",
        "key-team-b",
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed_with_errors"
    hits = httpx.post(
        rag_url + "/v1/collections/cli-docs/query",
        json={"query": "who checks virtual keys?"},
        headers={"authorization": "Bearer key-team-b"},
    ).json()
    assert hits["passages"][0]["document_id"] == "sub/gate.html"
