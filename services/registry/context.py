"""What every service class needs, built once per app and passed in explicitly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from services.registry.audit import AuditLog
from services.registry.cache import TTLCache
from services.registry.metrics import RegistryMetrics
from services.registry.mlflow_client import Mlflow
from services.registry.settings import RegistrySettings
from services.registry.store import Store


@dataclass
class Context:
    """Store, audit log, MLflow, cache and metrics of one app instance."""

    settings: RegistrySettings
    store: Store
    audit: AuditLog
    mlflow: Mlflow
    cache: TTLCache
    metrics: RegistryMetrics
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def object_lock(self, key: str) -> Iterator[None]:
        """Serialise check-then-write sequences on one object (e.g. duplicate checks) inside this process."""
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def record(self, *, run_id: str | None = None, **entry: Any) -> dict[str, Any]:
        """Append one audit entry in its own transaction, then mirror it onto the MLflow object."""
        with self.store.transaction() as conn:
            stored = self.audit.append(conn, **entry)
        self.after_commit(stored, run_id=run_id)
        return stored

    def after_commit(self, entry: dict[str, Any], *, run_id: str | None = None) -> None:
        """Count the change and copy it to MLflow (best effort, counted when it fails)."""
        self.metrics.writes.labels(entry["object_type"], entry["action"]).inc()
        if not self.mlflow.mirror_audit(entry, run_id=run_id):
            self.metrics.mirror_failures.inc()


def build_context(settings: RegistrySettings, metrics: RegistryMetrics) -> Context:
    """Open the store and the MLflow client from settings."""
    store = Store(settings.database_url)
    return Context(
        settings=settings,
        store=store,
        audit=AuditLog(store, settings.audit_key.get_secret_value() if settings.audit_key else None),
        mlflow=Mlflow(
            settings.mlflow_tracking_uri,
            timeout_s=settings.mlflow_timeout_s,
            experiment_prefix=settings.experiment_prefix,
            username=settings.mlflow_username,
            password=settings.mlflow_password.get_secret_value() if settings.mlflow_password else None,
        ),
        cache=TTLCache(settings.cache_ttl_s),
        metrics=metrics,
    )
