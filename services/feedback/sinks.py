"""Optional mirrors of the feedback world: MLflow traces with feedback assessments, dataset registration.

MLflow is imported lazily: the service runs without it installed, and the sink is off unless
FEEDBACK_MLFLOW_TRACKING_URI is set. Mirroring is best effort and off the hot path: a slow or absent
MLflow never blocks ingestion (a bounded queue drops and counts when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from llmops_common.registry_client import AsyncRegistryClient
from services.feedback.events import TraceEvent

log = logging.getLogger("llmops.feedback.sinks")
REQUEST_ID_TAG = "llmops_request_id"


class FeedbackSink(Protocol):
    """Receives stored events and feedback."""

    async def events(self, events: list[TraceEvent]) -> None:
        """Stored trace events."""
        ...

    async def feedback(self, row: dict[str, Any]) -> None:
        """A stored feedback row."""
        ...


class MlflowSink:
    """Writes each event as an MLflow 3 trace (tagged with the request id) and feedback as assessments."""

    name = "mlflow"

    def __init__(self, tracking_uri: str, experiment: str, queue_size: int = 10_000) -> None:
        import mlflow  # optional dependency: only imported when the sink is configured

        self.mlflow = mlflow
        # MLflow keeps the URI in its module state and also exports MLFLOW_TRACKING_URI "so that subprocesses
        # inherit it"; the export is undone, so nothing started from this process is pointed at this server.
        exported = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(tracking_uri)
        if exported is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = exported
        self.experiment = experiment
        self._experiment_id: str | None = None  # resolved on first use: MLflow may start after this service
        # A daemon thread with a plain queue: MLflow's client retries for minutes when the server is gone,
        # and such a call must never hold up the event loop nor the process exit.
        self.queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self._thread = threading.Thread(target=self._drain, name="feedback-mlflow-sink", daemon=True)

    def start(self) -> None:
        """Start the background writer."""
        self._thread.start()

    async def stop(self) -> None:
        """Ask the writer to stop after its current item (what is still queued is dropped; the store has it)."""
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)

    def _offer(self, item: tuple[str, Any]) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    async def events(self, events: list[TraceEvent]) -> None:
        """Queue events for mirroring."""
        for ev in events:
            self._offer(("event", ev))

    async def feedback(self, row: dict[str, Any]) -> None:
        """Queue feedback for mirroring."""
        self._offer(("feedback", row))

    # Feedback can arrive before its trace is searchable in MLflow (the trace is exported asynchronously, and a
    # busy server indexes it later): such feedback is tried again with backoff, 0.5 s doubling to 30 s, ~2.5 min.
    FEEDBACK_ATTEMPTS = 10
    RETRY_BASE_S = 0.5
    RETRY_MAX_S = 30.0

    def _drain(self) -> None:
        waiting: list[tuple[float, int, dict[str, Any]]] = []  # (due, attempts so far, feedback row)
        while True:
            wait_s = max(0.0, min(w[0] for w in waiting) - time.monotonic()) if waiting else None
            try:
                item: tuple[str, Any] | None = self.queue.get(timeout=wait_s)
            except queue.Empty:
                item = ("due", None)
            if item is None:
                return
            now = time.monotonic()
            work: list[tuple[str, Any, int]] = [] if item[0] == "due" else [(item[0], item[1], 0)]
            work += [("feedback", row, attempts) for due, attempts, row in waiting if due <= now]
            waiting = [w for w in waiting if w[0] > now]
            for kind, payload, attempts in work:
                try:
                    if kind == "event":
                        self._write_trace(payload)
                    elif not self._write_feedback(payload):
                        if attempts + 1 < self.FEEDBACK_ATTEMPTS:
                            delay = min(self.RETRY_BASE_S * 2**attempts, self.RETRY_MAX_S)
                            waiting.append((now + delay, attempts + 1, payload))
                        else:
                            log.warning(
                                "no mlflow trace for feedback; not mirrored",
                                extra={"request_id": payload["request_id"]},
                            )
                except Exception as exc:  # MLflow down or rejecting: log and go on, the store has the data
                    log.warning("mlflow mirror failed", extra={"kind": kind, "error": repr(exc)})

    @property
    def experiment_id(self) -> str:
        """The experiment's id, created on first use (runs on the writer thread, may raise while MLflow is down)."""
        if self._experiment_id is None:
            # Looked up or created with the client, not `mlflow.set_experiment`: that one also exports
            # MLFLOW_EXPERIMENT_ID into this process' environment, which every process started from here inherits.
            client = self.mlflow.MlflowClient()
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = str(found.experiment_id if found else client.create_experiment(self.experiment))
        return self._experiment_id

    def _write_trace(self, ev: TraceEvent) -> str:
        start_ns = int(ev.ts * 1e9)
        span = self.mlflow.start_span_no_context(
            name=f"gateway.{ev.endpoint}",
            span_type="LLM",
            inputs={"prompt": ev.prompt},
            attributes={"model": ev.model, "team": ev.team, "status": str(ev.status), "request_id": ev.request_id},
            tags={
                REQUEST_ID_TAG: ev.request_id,
                "team": ev.team,
                "model": ev.model,
                "project": ev.project,
                # The event's text is already redacted or withheld here (events.parse_entry); say which.
                "llmops.text": ev.text_withheld or "stored",
            },
            experiment_id=self.experiment_id,
            start_time_ns=start_ns,
        )
        span.set_outputs({"response": ev.response})
        span.end(end_time_ns=start_ns + int(ev.latency_ms * 1e6))
        # Feedback on this request may come next in the queue: the trace must be searchable by then.
        self.mlflow.flush_trace_async_logging()
        return span.trace_id

    def _write_feedback(self, row: dict[str, Any]) -> bool:
        """Log the feedback on its trace; False when the trace is not searchable (yet)."""
        from mlflow.entities import AssessmentSource

        if "'" in row["request_id"] or "'" in row["team"]:
            return True  # would break out of the filter string's quotes; such ids never come from the gateway
        traces = self.mlflow.search_traces(
            locations=[self.experiment_id],
            # Request ids are per team: two teams may send the same x-request-id.
            filter_string=f"tags.{REQUEST_ID_TAG} = '{row['request_id']}' AND tags.team = '{row['team']}'",
            return_type="list",
            max_results=1,
            include_spans=False,
        )
        if not traces:
            log.info("no mlflow trace for feedback yet", extra={"request_id": row["request_id"]})
            return False
        source = AssessmentSource(source_type="HUMAN", source_id=row.get("key_id") or "unknown")
        trace_id = traces[0].info.trace_id
        self.mlflow.log_feedback(
            trace_id=trace_id, name="user_score", value=row["score"], source=source, rationale=row.get("comment")
        )
        if row.get("corrected_answer"):
            self.mlflow.log_expectation(
                trace_id=trace_id, name="corrected_answer", value=row["corrected_answer"], source=source
            )
        return True

    async def register(self, record: dict[str, Any], path: Path) -> str:
        """Log the dataset file as a run artifact with its hash and row count; returns the artifact URI."""
        return await asyncio.to_thread(self._register, record, path)

    def _register(self, record: dict[str, Any], path: Path) -> str:
        name = record["registry_name"]
        with self.mlflow.start_run(experiment_id=self.experiment_id, run_name=f"dataset-{name}") as run:
            self.mlflow.log_params({"name": name, "version": record["version"], "rows": record["rows"]})
            self.mlflow.set_tags(
                {
                    "llmops.dataset.sha256": record["sha256"],
                    "llmops.kind": "dataset",
                    "llmops.created_by": str(record.get("created_by")),
                }
            )
            self.mlflow.log_artifact(str(path), artifact_path="datasets")
            return f"{run.info.artifact_uri}/datasets/{path.name}"


ON_BEHALF = "x-llmops-on-behalf-of"  # the registry's header (services/registry/routes/datasets.py)


class RegistryRegistrar:
    """Registers a dataset version with the registry service (POST /v1/datasets/{name}/versions)."""

    name = "registry"

    def __init__(self, client: AsyncRegistryClient) -> None:
        self.client = client

    async def register(self, record: dict[str, Any], path: Path) -> str:
        """Send hash, schema, row count and file URI; returns `name@version` as the registry numbered it.

        Feedback registers on behalf of the caller who asked for the export (issue 12, row 8): its token is one of
        the registry's REGISTRY_SERVICE_TOKENS, and X-LLMOps-On-Behalf-Of names the caller, whom the registry
        records as `created_by` (it refuses that header from anyone else). Feedback's own admin is named
        `feedback-admin`, never the registry's `admin`.
        """
        creator = str(record.get("created_by") or "")
        behalf = "feedback-admin" if creator in ("", "admin") else creator
        body = await self.client.create_dataset_version(
            record["registry_name"],
            headers={ON_BEHALF: behalf},
            body={
                "digest": f"sha256:{record['sha256']}",
                "schema": {"messages": "list[{role: string, content: string}]"},
                "row_count": record["rows"],
                "source": path.resolve().as_uri(),
                "source_type": "feedback-export",
                "description": f"feedback export {record['registry_name']} v{record['version']} (chat JSONL, "
                f"PII-redacted), exported by {record.get('created_by')}",
            },
        )
        return f"{body['name']}@{body['version']}"

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()
