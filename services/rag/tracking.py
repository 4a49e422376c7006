"""Optional run logging to MLflow over its REST API (no mlflow package needed); a no-op when unset."""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Protocol

from llmops_common.http import BlockingHTTP, HTTPError

log = logging.getLogger("rag.tracking")
# MLflow accepts only these characters in param and metric names ("recall@5" is refused with a 400).
_NOT_IN_MLFLOW_KEYS = re.compile(r"[^/\w.\- ]")


def mlflow_key(name: str) -> str:
    """A param/metric name MLflow accepts: `recall@5` -> `recall_at_5`, other characters -> `_`."""
    return _NOT_IN_MLFLOW_KEYS.sub("_", name.replace("@", "_at_"))


class RunLogger(Protocol):
    """Logs one run (params, metrics, tags); returns the run id or None."""

    def log_run(
        self, name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]
    ) -> str | None: ...


class NullRunLogger:
    """Used when RAG_MLFLOW_TRACKING_URI is empty."""

    def log_run(self, name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Do nothing."""
        return None


class MlflowRunLogger:
    """Creates the experiment on first use, then one run per call via runs/create + log-batch + update."""

    def __init__(
        self, tracking_uri: str, experiment: str, timeout_s: float = 10.0, auth: tuple[str, str] | None = None
    ) -> None:
        self.base = tracking_uri.rstrip("/") + "/api/2.0/mlflow"
        self.experiment = experiment
        self.timeout_s = timeout_s
        # MLflow's basic auth (a user of MLFLOW_AUTH_USERS): sent on every call, no log shows it.
        self._auth = auth
        self._experiment_id: str | None = None

    def _post(self, client: BlockingHTTP, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = client.post(f"{self.base}/{path}", json=body)
        resp.raise_for_status()
        return resp.json()

    def _experiment(self, client: BlockingHTTP) -> str:
        if self._experiment_id:
            return self._experiment_id
        resp = client.get(f"{self.base}/experiments/get-by-name", params={"experiment_name": self.experiment})
        if resp.status_code == 200:
            self._experiment_id = resp.json()["experiment"]["experiment_id"]
            return self._experiment_id
        created = client.post(f"{self.base}/experiments/create", json={"name": self.experiment})
        if created.status_code == 200:
            self._experiment_id = created.json()["experiment_id"]
            return self._experiment_id
        # Another replica (or the CLI) created it between our two calls.
        resp = client.get(f"{self.base}/experiments/get-by-name", params={"experiment_name": self.experiment})
        resp.raise_for_status()
        self._experiment_id = resp.json()["experiment"]["experiment_id"]
        return self._experiment_id

    def log_run(self, name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str]) -> str | None:
        """Log one finished run; a tracking failure is logged, never fails the ingestion or eval."""
        now_ms = int(time.time() * 1000)
        try:
            with BlockingHTTP(timeout_s=self.timeout_s, connect_s=self.timeout_s, auth=self._auth) as client:
                exp = self._experiment(client)
                run = self._post(
                    client,
                    "runs/create",
                    {
                        "experiment_id": exp,
                        "run_name": name,
                        "start_time": now_ms,
                        "tags": [{"key": k, "value": str(v)[:5000]} for k, v in tags.items()],
                    },
                )
                run_id = run["run"]["info"]["run_id"]
                try:
                    self._post(
                        client,
                        "runs/log-batch",
                        {
                            "run_id": run_id,
                            "params": [{"key": mlflow_key(k), "value": str(v)[:6000]} for k, v in params.items()],
                            "metrics": [
                                {"key": mlflow_key(k), "value": float(v), "timestamp": now_ms, "step": 0}
                                for k, v in metrics.items()
                            ],
                        },
                    )
                except (*HTTPError, ValueError):
                    # Do not leave a run RUNNING forever in the UI; the warning below says why it failed.
                    client.post(f"{self.base}/runs/update", json={"run_id": run_id, "status": "FAILED"})
                    raise
                self._post(client, "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": now_ms})
                return run_id
        except (*HTTPError, KeyError, ValueError) as exc:
            log.warning("MLflow logging failed; the run is recorded in the catalog only", extra={"error": str(exc)})
            return None


def build_run_logger(tracking_uri: str, experiment: str, auth: tuple[str, str] | None = None) -> RunLogger:
    """MLflow when a tracking URI is configured, otherwise the no-op logger."""
    return MlflowRunLogger(tracking_uri, experiment, auth=auth) if tracking_uri else NullRunLogger()


def flatten(prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    """Flatten nested dicts into dotted keys (MLflow params and metrics are flat)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(f"{name}.", value))
        else:
            out[name] = value
    return out
