"""Ingestion jobs: queued per team in this process, run in small steps with round-robin across teams, polled by id.

Fairness: every job is a generator of small steps (one document, or one embedded group of chunks). The
worker takes one step of the head job of the next team in turn, so one team's long job slows another team's
short job by one step per turn instead of blocking it until the end. Inside a team, jobs run in order.
Jobs live in memory (a restarted replica forgets them); documents and run records live in Qdrant.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from services.rag.ingest import CollectionDeleted, Progress, RawDocument
from services.rag.store import StoreUnavailable

log = logging.getLogger("rag.jobs")
Steps = Generator[None, None, dict[str, Any]]
Starter = Callable[[dict[str, Any], list[RawDocument], Progress, bool], Steps]
FINAL = ("succeeded", "completed_with_errors", "failed", "cancelled")


class TooManyJobs(Exception):
    """The team already has its maximum of queued and running jobs."""


@dataclass
class Job:
    """One ingestion job and its live progress."""

    id: str
    team: str
    collection: str
    progress: Progress
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    run: dict[str, Any] | None = None
    error: str | None = None
    error_code: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def results_page(self, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """Per-document results from `cursor`, at most `limit`; and the next cursor (None at the end)."""
        results = self.progress.results
        page = list(results[cursor : cursor + limit])
        end = cursor + len(page)
        return page, (end if end < len(results) or not self.done.is_set() else None)

    def view(self, results_limit: int = 50) -> dict[str, Any]:
        """JSON form for GET /v1/jobs/{id}: counters, counts per result status, and the first `results_limit`
        per-document results (the rest page through GET /v1/jobs/{id}/results)."""
        p = self.progress
        page, _ = self.results_page(0, results_limit)
        results = list(p.results)  # (a snapshot: the worker appends while we count)
        total = len(results)
        counts: dict[str, int] = {}
        for result in results:
            counts[result["status"]] = counts.get(result["status"], 0) + 1
        return {
            "id": self.id,
            "status": self.status,
            "collection": self.collection,
            "documents_total": p.documents_total,
            "documents_read": p.documents_read,
            "documents_done": p.documents_done,
            "chunks_total": p.chunks_total,
            "chunks_embedded": p.chunks_embedded,
            "chunks_done": p.chunks_done,
            "batches_done": p.batches_done,
            "counts": counts,
            "errors": counts.get("failed", 0),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "updated_at": p.updated_at,
            "finished_at": self.finished_at,
            "run": self.run,
            "error": self.error,
            "error_code": self.error_code,
            "results": page,
            "results_total": total,
            # The rest pages through GET /v1/jobs/{id}/results?cursor=...: a poll stays small on a big job.
            "results_next_cursor": len(page) if total > len(page) else None,
        }


class JobManager:
    """Per-team FIFO queues served round-robin, one step at a time, by `workers` threads."""

    def __init__(
        self,
        start: Starter,
        finish: Callable[[dict[str, Any]], dict[str, Any]],
        on_finish: Callable[[Job], None],
        *,
        max_jobs_per_team: int = 4,
        workers: int = 1,
        keep: int = 200,
        gone: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self._start = start
        self._gone = gone or (lambda _collection: False)
        self._finish = finish
        self._on_finish = on_finish
        self._max_jobs_per_team = max_jobs_per_team
        self._keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queues: OrderedDict[str, deque[tuple[Job, dict[str, Any], list[RawDocument], bool]]] = OrderedDict()
        self._steps: dict[str, Steps] = {}
        self._busy: set[str] = set()  # teams whose head job is being stepped now (one step per team at a time)
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"rag-ingest-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self,
        collection: dict[str, Any],
        docs: list[RawDocument],
        redact: bool,
        meter: Callable[[int], None] | None = None,
    ) -> Job:
        """Queue a job and return it at once; TooManyJobs when the team is at its limit. `meter` charges the
        caller's key for each group of tokens before it is embedded."""
        team = collection["team"]
        job = Job(uuid.uuid4().hex, team, collection["name"], Progress(documents_total=len(docs), meter=meter))
        with self._cond:
            if self._active(team) >= self._max_jobs_per_team:
                raise TooManyJobs(f"team has {self._max_jobs_per_team} ingestion jobs queued or running")
            self._jobs[job.id] = job
            self._forget_old()
            self._queues.setdefault(team, deque()).append((job, collection, docs, redact))
            self._cond.notify()
        return job

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.done.is_set()]
        for job_id in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[job_id]

    def _next(self) -> tuple[str, Job, dict[str, Any], list[RawDocument], bool] | None:
        """The head job of the first team in turn that is not busy; that team moves to the back of the turn."""
        for team, queue in self._queues.items():
            if team in self._busy:
                continue
            self._busy.add(team)
            self._queues.move_to_end(team)
            return (team, *queue[0])
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
                while picked is None and not self._stopping:
                    self._cond.wait()
                    picked = self._next()
                if picked is None:
                    return
            team, job, collection, docs, redact = picked
            finished = self._step(job, collection, docs, redact)
            with self._cond:
                self._busy.discard(team)
                queue = self._queues.get(team)
                if finished and queue:  # (gone when shutdown cleared the queues meanwhile)
                    queue.popleft()
                    if not queue:
                        del self._queues[team]
                self._cond.notify_all()
            if finished:
                self._end(job)

    def _step(self, job: Job, collection: dict[str, Any], docs: list[RawDocument], redact: bool) -> bool:
        """Advance one job by one step; True when it has ended (whatever the outcome)."""
        if job.status == "queued":
            if job.progress.cancel_requested:
                job.status = "cancelled"
                return True
            job.status, job.started_at = "running", time.time()
            self._steps[job.id] = self._start(collection, docs, job.progress, redact)
        try:
            next(self._steps[job.id])
            return False
        except StopIteration as stop:
            job.run = self._finish(stop.value)
            if job.progress.cancel_requested:
                job.status = "cancelled"
            else:
                job.status = "completed_with_errors" if job.progress.errors else "succeeded"
        except CollectionDeleted as exc:
            job.status, job.error_code, job.error = "failed", "collection_deleted", str(exc)
        except Exception as exc:  # a job must end in a visible state, whatever broke
            self._failed(job, collection, exc)
        self._steps.pop(job.id, None)
        return True

    def _failed(self, job: Job, collection: dict[str, Any], exc: Exception) -> None:
        """A step raised: say what happened in the caller's words (never the internal collection's name)."""
        job.status = "failed"
        if self._gone(collection):  # a delete raced a write: Qdrant's own error names the internal collection
            job.error_code = "collection_deleted"
            job.error = f"collection '{collection['name']}' was deleted while the job ran"
            return
        hidden = collection["qdrant_collection"]  # Qdrant's messages name it: say what happened, not where
        if isinstance(exc, StoreUnavailable):
            job.error_code, job.error = "vector_store_unavailable", str(exc).replace(hidden, collection["name"])
            return
        log.error("ingestion job failed", exc_info=exc, extra={"job_id": job.id})
        job.error_code = "ingestion_failed"
        job.error = f"{type(exc).__name__}: {exc}".replace(hidden, collection["name"])

    def _end(self, job: Job) -> None:
        job.finished_at = time.time()
        job.done.set()
        try:
            self._on_finish(job)
        except Exception:  # metrics and clean-up must not take the worker thread down with them
            log.exception("after-job hook failed", extra={"job_id": job.id})

    def cancel(self, job: Job) -> None:
        """Stop a job: a queued one ends now, a running one after its current step (what it wrote stays)."""
        job.progress.cancel_requested = True
        removed = False
        with self._cond:
            queue = self._queues.get(job.team)
            head_in_use = queue is not None and bool(queue) and queue[0][0] is job and job.team in self._busy
            if job.status == "queued" and queue and not head_in_use:
                for entry in list(queue):
                    if entry[0] is job:
                        queue.remove(entry)
                        removed = True
                if not queue:
                    del self._queues[job.team]
                if removed:
                    job.status = "cancelled"
            self._cond.notify_all()
        if removed:
            self._end(job)

    def get(self, job_id: str, team: str) -> Job | None:
        """A job of this team (other teams' jobs do not exist for it)."""
        job = self._jobs.get(job_id)
        return job if job and job.team == team else None

    def _active(self, team: str | None = None) -> int:
        return sum(1 for j in self._jobs.values() if not j.done.is_set() and (team is None or j.team == team))

    def active(self, team: str | None = None) -> int:
        """Jobs queued or running (of one team, or of all)."""
        with self._cond:
            return self._active(team)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop taking steps (a step in progress completes); queued jobs are forgotten with the process."""
        with self._cond:
            self._stopping = True
            self._queues.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        for steps in self._steps.values():
            steps.close()  # waits for a write in flight
