"""The MLflow mirror's writer thread, without a server: feedback that arrives before its trace is searchable is
tried again with backoff (a busy MLflow indexes an asynchronously exported trace late), and given up after a bound."""

from __future__ import annotations

import threading
from typing import Any

from services.feedback.sinks import MlflowSink


class ScriptedSink(MlflowSink):
    """The real writer loop; the MLflow calls replaced by a script of 'is the trace searchable yet' answers."""

    RETRY_BASE_S = 0.01
    RETRY_MAX_S = 0.02

    def __init__(self, visible_after: int) -> None:
        super().__init__("http://127.0.0.1:9", "retry-test")  # never contacted: the writes are replaced below
        self.visible_after = visible_after
        self.tries: list[str] = []
        self.logged: list[str] = []
        self.finished = threading.Event()

    def _write_trace(self, ev: Any) -> str:
        return "trace"

    def _write_feedback(self, row: dict[str, Any]) -> bool:
        self.tries.append(row["request_id"])
        if len(self.tries) <= self.visible_after:
            if len(self.tries) == self.FEEDBACK_ATTEMPTS:
                self.finished.set()
            return False
        self.logged.append(row["request_id"])
        self.finished.set()
        return True


def run(sink: ScriptedSink) -> None:
    sink.start()
    sink._offer(("feedback", {"request_id": "r1", "team": "t"}))
    assert sink.finished.wait(10)
    sink.queue.put(None)
    sink._thread.join(10)


def test_feedback_waits_for_its_trace_to_become_searchable() -> None:
    sink = ScriptedSink(visible_after=3)
    run(sink)
    assert sink.tries == ["r1"] * 4 and sink.logged == ["r1"]


def test_feedback_whose_trace_never_appears_is_given_up_after_a_bound() -> None:
    sink = ScriptedSink(visible_after=10_000)
    run(sink)
    assert len(sink.tries) == sink.FEEDBACK_ATTEMPTS and sink.logged == []
