"""What an ingestion run leaves behind beyond the index: an MLflow run and, with a registry, a dataset version.

The chain an answer is traced by: the answer's `data_version` is the first 16 hex digits of the collection's
content hash; the registry's dataset `rag.<team>.<collection>` has a version with that hash as its digest,
whose producer run (MLflow) holds the ingestion parameters (chunker, sizes, embedding model and version),
counts and the input set's hash. Without a registry the MLflow run alone carries `data_version` as a param.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from llmops_common.registry_client import RegistryError
from services.rag.catalog import Catalog
from services.rag.registry import DatasetRegistrar
from services.rag.tracking import RunLogger, flatten

log = logging.getLogger("rag.lineage")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def dataset_name(team: str, collection: str) -> str:
    """The registry dataset of a team's collection (collection names are per team, so the team is in it)."""
    return f"rag.{_UNSAFE.sub('-', team)[:60]}.{collection}"


def chunk_schema(params: dict[str, Any]) -> dict[str, str]:
    """What one row (a chunk point in Qdrant) holds."""
    return {
        "chunk_id": "uuid",
        "doc_id": "string",
        "title": "string",
        "section": "string",
        "text": "string",
        "chunk_index": "int",
        "tokens": "int",
        "content_hash": "string",
        "source": "string",
        "meta": "object",
        "dense": f"float32[{params.get('embedding_dimension')}] {params.get('embedding_model')}",
        "sparse": str(params.get("sparse_encoder", "bm25")),
    }


class IngestRecorder:
    """Records a finished run; a tracking or registry failure is logged and noted, never fails the ingestion."""

    def __init__(
        self,
        catalog: Catalog,
        run_logger: RunLogger,
        registrar: DatasetRegistrar | None = None,
        *,
        qdrant_url: str | None = None,
        qdrant_path: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.run_logger = run_logger
        self.registrar = registrar
        self.qdrant_url = qdrant_url
        self.qdrant_path = qdrant_path

    def source_uri(self, qdrant_collection: str) -> str:
        """Where the rows live: the Qdrant server's collection URL, or the local-mode folder."""
        if self.qdrant_url:
            return f"{self.qdrant_url.rstrip('/')}/collections/{qdrant_collection}"
        return ((self.qdrant_path or Path("qdrant")).resolve() / "collection" / qdrant_collection).as_uri()

    def record(self, run: dict[str, Any]) -> dict[str, Any]:
        """Log the MLflow run, register the dataset version, store both references on the run record."""
        counts = run["counts"]
        metrics = {f"count.{k}": float(v) for k, v in counts.items()}
        metrics["embed_seconds"] = float(run["embed_seconds"])
        metrics["duration_seconds"] = float(run["finished_at"] - run["started_at"])
        params = flatten("", run["params"]) | {
            "collection": run["collection"],
            "input_hash": run["input_hash"],
            "data_version": run["data_version"],
        }
        tags = {"kind": "rag-ingest", "team": run["team"], "collection": run["collection"], "run_id": run["run_id"]}
        run["mlflow_run_id"] = self.run_logger.log_run(f"ingest-{run['collection']}", params, metrics, tags)
        run["dataset_version"], run["dataset_error"] = None, None
        if self.registrar is not None:
            try:
                run["dataset_version"] = self._register(run)
            except (RegistryError, KeyError, ValueError, TypeError) as exc:
                run["dataset_error"] = str(exc)
                log.warning(
                    "ingestion run not registered as a dataset version; it is in MLflow and the catalog only",
                    extra={"error": str(exc), "run_id": run["run_id"]},
                )
        self.catalog.put_run(run)
        return run

    def _register(self, run: dict[str, Any]) -> dict[str, Any] | None:
        collection = self.catalog.get_collection(run["team"], run["collection"])
        digest = (collection or {}).get("data_digest")
        if collection is None or not digest:
            return None  # nothing indexed (every document failed): no data to version
        params, counts = run["params"], run["counts"]
        description = (
            f"RAG collection '{run['collection']}' of team '{run['team']}' after ingestion run {run['run_id']}: "
            f"{collection['documents']} documents, {collection['chunks']} chunks (data_version "
            f"{collection['data_version']}). This run: {counts.get('documents', 0)} documents in, input set hash "
            f"sha256:{run['input_hash']}, MLflow run {run['mlflow_run_id'] or '-'}. Chunker "
            f"{params['chunker']} v{params['chunker_version']} ({params['chunk_size_tokens']} tokens, overlap "
            f"{params['chunk_overlap_tokens']}); embeddings {params['embedding_model']} "
            f"{params['embedding_model_version']}."
        )
        name = dataset_name(run["team"], run["collection"])
        assert self.registrar is not None
        out = self.registrar.register(
            name,
            {
                "digest": f"sha256:{digest}",
                "schema": chunk_schema(params),
                "row_count": int(collection["chunks"]),
                "source": self.source_uri(collection["qdrant_collection"]),
                "source_type": "qdrant",
                "producer_run_id": run["mlflow_run_id"],
                "description": description[:5000],
            },
        )
        return out | {"ref": f"{out['name']}@{out['version']}"}
