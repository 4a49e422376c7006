"""Ingestion jobs: queued in this process, run one at a time on a worker thread, polled by id.

Jobs live in memory (a restarted replica forgets them); documents and run records live in Qdrant.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.rag.ingest import Progress, RawDocument
from services.rag.store import StoreUnavailable

log = logging.getLogger("rag.jobs")
Runner = Callable[[dict[str, Any], list[RawDocument], Progress, bool], dict[str, Any]]


@dataclass
class Job:
    """One ingestion job and its live progress."""

    id: str
    team: str
    collection: str
    progress: Progress
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    run: dict[str, Any] | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def view(self, with_results: bool = True) -> dict[str, Any]:
        """JSON form for GET /v1/jobs/{id}."""
        p = self.progress
        body = {
            "id": self.id,
            "status": self.status,
            "collection": self.collection,
            "documents_total": p.documents_total,
            "documents_done": p.documents_done,
            "chunks_done": p.chunks_done,
            "errors": len(p.errors),
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "run": self.run,
            "error": self.error,
        }
        if with_results:
            body["results"] = list(p.results)
        return body


class JobManager:
    """FIFO of jobs on one worker thread (the embedder already uses every core)."""

    def __init__(self, runner: Runner, on_finish: Callable[[Job], None], keep: int = 200) -> None:
        self._runner = runner
        self._on_finish = on_finish
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-ingest")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._keep = keep

    def submit(self, collection: dict[str, Any], docs: list[RawDocument], redact: bool) -> Job:
        """Queue a job and return it at once."""
        job = Job(uuid.uuid4().hex, collection["team"], collection["name"], Progress(documents_total=len(docs)))
        self._jobs[job.id] = job
        while len(self._jobs) > self._keep:
            oldest = next(iter(self._jobs.values()))
            if not oldest.done.is_set():
                break
            self._jobs.popitem(last=False)
        self._executor.submit(self._run, job, collection, docs, redact)
        return job

    def _run(self, job: Job, collection: dict[str, Any], docs: list[RawDocument], redact: bool) -> None:
        job.status = "running"
        try:
            job.run = self._runner(collection, docs, job.progress, redact)
            job.status = "completed_with_errors" if job.progress.errors else "succeeded"
        except StoreUnavailable as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # a job must end in a visible state, whatever broke
            log.exception("ingestion job failed", extra={"job_id": job.id})
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = time.time()
            job.done.set()
            self._on_finish(job)

    def get(self, job_id: str, team: str) -> Job | None:
        """A job of this team (other teams' jobs do not exist for it)."""
        job = self._jobs.get(job_id)
        return job if job and job.team == team else None

    def active(self) -> int:
        """Jobs queued or running."""
        return sum(1 for j in self._jobs.values() if not j.done.is_set())

    def shutdown(self) -> None:
        """Stop accepting work; let the running job finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)
