"""Command line: ingest a folder (in-process or through a running service) and run evals, with progress bars.

python -m services.rag.cli ingest-dir docs --collection llmops-docs            # in-process, team "public"
python -m services.rag.cli ingest-dir docs --collection notes --url http://127.0.0.1:8002 --api-key sk-...
python -m services.rag.cli eval dataset.json --collection notes --api-key sk-...
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from llmops_common.http import BlockingHTTP
from services.rag.extract import EXTENSIONS

_MIME = {"text": "text/plain", "markdown": "text/markdown", "html": "text/html", "pdf": "application/pdf"}


def find_files(folder: Path, pattern: str | None) -> list[Path]:
    """Supported files under a folder, sorted (a stable order gives a stable input hash)."""
    files = folder.rglob(pattern) if pattern else folder.rglob("*")
    return sorted(p for p in files if p.is_file() and (pattern or p.suffix.lower() in EXTENSIONS))


def _ingest_local(files: list[Path], root: Path, collection: str, team: str, description: str) -> dict[str, Any]:
    """Run the pipeline in this process against the configured Qdrant (the service must not hold local mode)."""
    from services.rag.app import build_embedder, build_pipeline, build_recorder, open_store
    from services.rag.catalog import Catalog
    from services.rag.ingest import Progress, RawDocument
    from services.rag.settings import RagSettings

    settings = RagSettings()
    store = open_store(settings)
    try:
        store.ensure_catalog()
        catalog = Catalog(store, settings.public_team)
        embedder = build_embedder(settings)
        record = catalog.get_collection(team, collection) or catalog.create_collection(
            team, collection, description, embedder.dimension
        )
        pipeline = build_pipeline(settings, embedder, catalog)
        docs = [
            RawDocument(p.read_bytes(), str(p.relative_to(root)), None, None, str(p.relative_to(root))) for p in files
        ]
        progress = Progress(documents_total=len(docs))
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["run"] = pipeline.run(record, docs, progress)
            except Exception as exc:  # surfaced below, after the progress bar closes
                outcome["error"] = exc

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        _follow(lambda: (progress.documents_done, progress.chunks_done, len(progress.errors)), len(docs), worker)
        if "error" in outcome:
            raise outcome["error"]
        # The same record as an ingestion through the service: MLflow run, registry dataset version.
        run = build_recorder(settings, catalog).record(outcome["run"])
        run["results"] = progress.results
        return run
    finally:
        store.close()


def _follow(read: Any, total: int, worker: threading.Thread | None = None, poll: Any = None) -> None:
    """Draw a progress bar until the work ends (a thread, or a job polled over HTTP)."""
    with tqdm(total=total, unit="doc", file=sys.stderr) as bar:
        while True:
            done, chunks, errors = read() if poll is None else poll()
            bar.n = done
            bar.set_postfix(chunks=chunks, errors=errors)
            bar.refresh()
            finished = (worker is not None and not worker.is_alive()) or (poll is not None and done >= total)
            if finished:
                break
            time.sleep(0.2)


def _ingest_http(files: list[Path], root: Path, collection: str, url: str, key: str) -> dict[str, Any]:
    """Upload through a running service and poll the job."""
    headers = {"authorization": f"Bearer {key}"}
    with BlockingHTTP(url, headers=headers, timeout_s=120, connect_s=120) as client:
        resp = client.post("/v1/collections", json={"name": collection})
        if resp.status_code not in (201, 409):
            raise SystemExit(f"cannot create the collection: {resp.status_code} {resp.text}")
        uploads = aiohttp.FormData(quote_fields=False)  # file names as they are ("sub/gate.html", not sub%2Fgate)
        for p in files:
            mime = _MIME[EXTENSIONS.get(p.suffix.lower(), "text")]
            uploads.add_field("files", p.read_bytes(), filename=str(p.relative_to(root)), content_type=mime)
        resp = client.post(f"/v1/collections/{collection}/documents/upload", data=uploads)
        if resp.status_code != 202:
            raise SystemExit(f"ingest refused: {resp.status_code} {resp.text}")
        job_id = resp.json()["id"]
        state: dict[str, Any] = {}

        def poll() -> tuple[int, int, int]:
            state.update(client.get(f"/v1/jobs/{job_id}").json())
            finished = state["status"] not in ("queued", "running")
            done = state["documents_total"] if finished else state["documents_done"]
            return done, state["chunks_done"], state["errors"]

        _follow(None, len(files), poll=poll)
        while state["status"] in ("queued", "running"):
            time.sleep(0.2)
            state = client.get(f"/v1/jobs/{job_id}").json()
        return state


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m services.rag.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ing = sub.add_parser("ingest-dir", help="Ingest every .md/.txt/.html/.pdf file under a folder.")
    ing.add_argument("folder", type=Path)
    ing.add_argument("--collection", required=True)
    ing.add_argument("--team", default=None, help="In-process only; default: the public team (readable by all).")
    ing.add_argument("--pattern", default=None, help="Glob such as '*.md' (default: every supported file).")
    ing.add_argument("--description", default="")
    ing.add_argument("--url", default=None, help="Go through a running service instead of in-process.")
    ing.add_argument("--api-key", default=None)
    ev = sub.add_parser("eval", help="Evaluate retrieval (and answers) of a collection through a running service.")
    ev.add_argument("dataset", type=Path, help="JSON with {name, questions:[{question, gold_doc_ids, ...}]}.")
    ev.add_argument("--collection", required=True)
    ev.add_argument("--url", default="http://127.0.0.1:8002")
    ev.add_argument("--api-key", required=True)
    ev.add_argument("--answers", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "ingest-dir":
        if not args.folder.is_dir():
            parser.error(f"{args.folder} is not a folder")
        files = find_files(args.folder, args.pattern)
        if not files:
            parser.error(f"no supported files under {args.folder}")
        if args.url:
            result = _ingest_http(files, args.folder, args.collection, args.url, args.api_key or "")
        else:
            from services.rag.settings import RagSettings

            team = args.team or RagSettings().public_team
            result = _ingest_local(files, args.folder, args.collection, team, args.description)
        summary = {k: v for k, v in result.items() if k != "results"}
        failed = [r for r in result.get("results", []) if r["status"] == "failed"]
        print(json.dumps(summary | {"failed": failed}, indent=2, default=str))
        return 0
    dataset = json.loads(args.dataset.read_text(encoding="utf-8"))
    body = {"name": dataset.get("name", args.dataset.stem), "questions": dataset["questions"], "answers": args.answers}
    with BlockingHTTP(args.url, headers={"authorization": f"Bearer {args.api_key}"}, timeout_s=3600) as http:
        resp = http.post(f"/v1/collections/{args.collection}/eval", json=body)
    report = resp.json()
    for name, result in report.get("strategies", {}).items():
        print(name, json.dumps(result["metrics"]))
    if "answers" in report:
        print("answers", json.dumps(report["answers"]["metrics"]))
    return 0 if resp.status_code == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
