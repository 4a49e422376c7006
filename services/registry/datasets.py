"""Dataset versions: a row in the governance store plus an MLflow run whose input is the dataset."""

from __future__ import annotations

import json
import time
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.registry.auth import Principal
from services.registry.context import Context
from services.registry.errors import RegistryError
from services.registry.schemas import DatasetVersionCreate
from services.registry.store import datasets


def mlflow_digest(digest: str) -> str:
    """MLflow caps a dataset digest at 36 characters; the full hash stays in our store and the run's tags."""
    return digest.split(":", 1)[-1][:36]


def _row(r: Any) -> dict[str, Any]:
    d = dict(r)
    d.pop("archived", None)
    return d


class DatasetService:
    """Register and read dataset versions; models and evals reference them by (name, version)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ml = ctx.mlflow

    def register(
        self, actor: Principal, name: str, body: DatasetVersionCreate, on_behalf: str | None = None
    ) -> dict[str, Any]:
        """Register the next version of `name`; the same content hash twice is a 409. A platform service registers
        `on_behalf` of its caller: the caller is `created_by` (and the audit entry's actor), the service is named
        in the entry's reason and the run's `llmops.registered_via` tag."""
        creator = on_behalf or actor.name
        with self.ctx.object_lock(f"dataset/{name}"):
            with self.ctx.store.read() as conn:
                dup = conn.execute(
                    select(datasets.c.version).where(datasets.c.name == name, datasets.c.digest == body.digest)
                ).first()
                last = conn.execute(select(func.max(datasets.c.version)).where(datasets.c.name == name)).scalar()
            if dup:
                raise RegistryError(
                    409,
                    "duplicate_dataset",
                    f"dataset {name!r} version {dup.version} already has digest {body.digest}",
                    existing_version=dup.version,
                )
            if body.producer_run_id and self.ml.find(self.ml.client.get_run, body.producer_run_id) is None:
                raise RegistryError(400, "unknown_run", f"MLflow run {body.producer_run_id} does not exist")
            version = (last or 0) + 1
            run_id = self._dataset_run(name, version, body, creator, actor.name if on_behalf else None)
            row = {
                "name": name,
                "version": version,
                "digest": body.digest,
                "schema": body.schema_,
                "row_count": body.row_count,
                "source": body.source,
                "source_type": body.source_type,
                "producer_run_id": body.producer_run_id,
                "mlflow_run_id": run_id,
                "description": body.description,
                "created_by": creator,
                "created_at": time.time(),
                "archived": False,
            }
            try:
                with self.ctx.store.transaction() as conn:
                    conn.execute(datasets.insert().values(**row))
                    entry = self.ctx.audit.append(
                        conn,
                        actor=creator,
                        action="dataset_version.register",
                        object_type="dataset",
                        object_id=f"dataset/{name}/{version}",
                        reason=f"registered by {actor.name} on behalf of {creator}" if on_behalf else None,
                        after=_row(row),
                    )
            except BaseException as exc:
                self.ml.find(self.ml.client.delete_run, run_id)
                if isinstance(exc, IntegrityError):  # another replica registered the same version/digest first
                    raise RegistryError(
                        409, "duplicate_dataset", f"dataset {name!r} changed concurrently; retry"
                    ) from exc
                raise
        self.ctx.after_commit(entry, run_id=run_id)
        return _row(row)

    def _dataset_run(self, name: str, version: int, body: DatasetVersionCreate, creator: str, via: str | None) -> str:
        """The dataset's run: its input is the dataset, its tags say where it came from."""
        tags = {
            "llmops.dataset.name": name,
            "llmops.dataset.version": str(version),
            "llmops.dataset.digest": body.digest,
            "llmops.dataset.row_count": str(body.row_count),
            "llmops.dataset.source": body.source[:5000],
            "llmops.created_by": creator,
        }
        if via:
            tags["llmops.registered_via"] = via
        if body.producer_run_id:
            tags["llmops.dataset.producer_run_id"] = body.producer_run_id
        client = self.ml.client
        run = self.ml.call(
            client.create_run, self.ml.experiment_id("datasets"), run_name=f"{name}-v{version}", tags=tags
        )
        run_id = run.info.run_id
        try:
            dataset = Dataset(
                name,
                mlflow_digest(body.digest),
                body.source_type,
                body.source,
                json.dumps(body.schema_),
                json.dumps({"num_rows": body.row_count, "version": version}),
            )
            self.ml.call(
                client.log_inputs,
                run_id,
                datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", "registered")])],
            )
            self.ml.call(client.set_terminated, run_id)
        except BaseException:
            self.ml.find(client.delete_run, run_id)
            raise
        return run_id

    def get(self, name: str, version: int, *, missing_status: int = 404) -> dict[str, Any]:
        """One version; `missing_status=400` when the caller referenced it from a request body."""
        with self.ctx.store.read() as conn:
            r = (
                conn.execute(select(datasets).where(datasets.c.name == name, datasets.c.version == version))
                .mappings()
                .first()
            )
        if r is None:
            code = "dataset_not_found" if missing_status == 404 else "unknown_dataset"
            raise RegistryError(missing_status, code, f"dataset {name!r} has no version {version}")
        return _row(r)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """All versions of one dataset, newest first (404 when there are none)."""
        with self.ctx.store.read() as conn:
            rows = (
                conn.execute(select(datasets).where(datasets.c.name == name).order_by(datasets.c.version.desc()))
                .mappings()
                .all()
            )
        if not rows:
            raise RegistryError(404, "dataset_not_found", f"dataset {name!r} does not exist")
        return [_row(r) for r in rows]

    def list_names(self) -> list[dict[str, Any]]:
        """Every dataset with its latest version."""
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(datasets.c.name, func.max(datasets.c.version).label("latest_version"))
                .group_by(datasets.c.name)
                .order_by(datasets.c.name)
            ).all()
        return [{"name": r.name, "latest_version": r.latest_version} for r in rows]
