"""The training data is pinned: documentation comes from committed, size-bounded, permissively licensed
snapshots, not from whatever the venv or the machine has installed; the shipped artifact names the digest of
exactly the data it was trained on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.guardrails.training import fit as F
from services.guardrails.training import man_pages, package_docs
from services.guardrails.training.data import load_examples, shared_datasets_dir, training_digest

ARTIFACT = Path(__file__).parents[1] / "artifacts" / "injection_model.json"
needs_data = pytest.mark.skipif(not shared_datasets_dir().exists(), reason="no shared/datasets beside the repository")


@pytest.mark.parametrize("source", sorted(package_docs.SNAPSHOTS))
def test_snapshots_are_bounded_permissive_and_rewrite_to_the_same_bytes(source: str, tmp_path: Path) -> None:
    path = package_docs.snapshot_path(source)
    assert 0 < path.stat().st_size <= package_docs.MAX_SNAPSHOT_BYTES
    records = package_docs.read_snapshot(source)
    assert records and [r["name"] for r in records] == sorted(r["name"] for r in records)
    for r in records:
        assert r["licence"] and r["version"] and len(r["sha256"]) == 64, r["name"]
        licences = [part.strip() for part in r["licence"].split(";")]
        # a Debian copyright file's `License:` ids, or the words a Python/npm licence field uses
        assert package_docs.permissive(r["licence"]) or all(
            package_docs._DEBIAN_PERMISSIVE.match(lic) for lic in licences
        ), (r["name"], r["licence"])
        assert not package_docs._COPYLEFT.search(r["licence"]), (r["name"], r["licence"])
        assert 0 < len(r["passages"]) <= package_docs.MAX_PER_PACKAGE
        assert "llmops" not in r["name"]
    # Deterministic encoding (no gzip timestamp): the same records give the committed bytes.
    rewritten = package_docs.write_snapshot(source, records, tmp_path)
    assert rewritten.read_bytes() == path.read_bytes()


@needs_data
def test_training_data_does_not_depend_on_the_installed_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    first = training_digest(load_examples())
    # A venv with nothing installed, and a machine without man pages: the training data is the same.
    monkeypatch.setattr(package_docs.md, "distributions", lambda: [])
    monkeypatch.setattr(man_pages, "collect", lambda *a, **k: [])
    monkeypatch.setattr(package_docs, "collect", lambda: pytest.fail("training read the installed packages"))
    assert training_digest(load_examples()) == first


@needs_data
def test_the_shipped_artifact_names_the_data_it_was_trained_on() -> None:
    meta = json.loads(ARTIFACT.read_text())["data"]
    assert meta["training_sha256"] == training_digest(load_examples())
    for key, source in (("package_docs", package_docs.SOURCE), ("system_docs", package_docs.SYSTEM_SOURCE)):
        snapshot = hashlib.sha256(package_docs.snapshot_path(source).read_bytes()).hexdigest()
        assert meta[key]["snapshot_sha256"] == snapshot


def test_man_pages_are_evaluation_only_content() -> None:
    assert man_pages.SOURCE in F.CONTENT_ONLY_BENIGN_SOURCES and man_pages.SOURCE in F.DOCUMENT_SOURCES
    ex = (
        next((e for e in load_examples(synthetic=False) if e.source == man_pages.SOURCE), None)
        if (shared_datasets_dir().exists() and man_pages.MAN_DIR.is_dir())
        else None
    )
    if ex is None:
        pytest.skip("no shared/datasets or no man pages on this machine")
    assert not ex.trainable and ex.mode == "content"
    assert not F.in_training_set(ex, "content") and not F.in_training_set(ex, "input")
