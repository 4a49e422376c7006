"""Runs drift comparisons on the store, publishes gauges, and logs when a signal crosses its threshold."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from services.feedback.drift import SIGNALS, Embed, Thresholds, compare_windows, sentence_embedder
from services.feedback.metrics import FeedbackMetrics
from services.feedback.store.queries import window_stats
from services.feedback.store.store import Store

log = logging.getLogger("llmops.feedback.drift")


class DriftMonitor:
    """Compares windows on demand (the endpoint) and on a timer (the gauges)."""

    def __init__(
        self,
        store: Store,
        metrics: FeedbackMetrics,
        thresholds: Thresholds,
        *,
        reference_s: float,
        current_s: float,
        max_samples: int,
        min_samples: int,
        embedding_model_path: str | None = None,
        embed: Embed | None = None,
    ) -> None:
        self.store, self.metrics, self.thresholds = store, metrics, thresholds
        self.reference_s, self.current_s = reference_s, current_s
        self.max_samples, self.min_samples = max_samples, min_samples
        self.embedding_model_path = embedding_model_path
        self._embed = embed
        self._embed_lock = asyncio.Lock()
        self._alerting: set[tuple[str, str]] = set()
        for signal in SIGNALS:
            metrics.drift_threshold.labels(signal).set(thresholds.for_signal(signal))

    async def embedder(self) -> Embed:
        """The sentence embedder, loaded once in a thread (about 6 s) the first time it is needed."""
        async with self._embed_lock:
            if self._embed is None:
                self._embed = await asyncio.to_thread(sentence_embedder, self.embedding_model_path)
        return self._embed

    async def compute(
        self,
        team: str | None,
        *,
        now: float | None = None,
        reference_s: float | None = None,
        current_s: float | None = None,
        reference_start: float | None = None,
        reference_end: float | None = None,
    ) -> dict[str, Any]:
        """Compare [now - current_s, now) with the reference window (by default the reference_s before it)."""
        now = time.time() if now is None else now
        cur_start = now - (current_s or self.current_s)
        ref_end = cur_start if reference_end is None else reference_end
        ref_start = ref_end - (reference_s or self.reference_s) if reference_start is None else reference_start
        ref = await self.store.read(window_stats, team, ref_start, ref_end, self.max_samples)
        cur = await self.store.read(window_stats, team, cur_start, now, self.max_samples)
        enough = min(int(ref["aggregate"]["n"] or 0), int(cur["aggregate"]["n"] or 0)) >= self.min_samples
        embed = await self.embedder() if enough else None  # the model loads only when there is data to compare
        scores, details = await asyncio.to_thread(compare_windows, ref, cur, embed, self.min_samples)
        scope = team or "all"
        signals = {}
        for signal, score in scores.items():
            threshold = self.thresholds.for_signal(signal)
            alert = score is not None and score > threshold
            signals[signal] = {"score": score, "threshold": threshold, "alert": alert}
            self._publish(scope, signal, score, alert)
        self.metrics.drift_samples.labels("reference", scope).set(int(ref["aggregate"]["n"] or 0))
        self.metrics.drift_samples.labels("current", scope).set(int(cur["aggregate"]["n"] or 0))
        return {
            "scope": scope,
            "computed_at": now,
            "windows": {
                "reference": {"start": ref_start, "end": ref_end, "events": int(ref["aggregate"]["n"] or 0)},
                "current": {"start": cur_start, "end": now, "events": int(cur["aggregate"]["n"] or 0)},
            },
            "signals": signals,
            "details": details,
            "alerting": sorted(s for s, v in signals.items() if v["alert"]),
        }

    def _publish(self, scope: str, signal: str, score: float | None, alert: bool) -> None:
        if score is not None:
            self.metrics.drift_score.labels(signal, scope).set(score)
        self.metrics.drift_alert.labels(signal, scope).set(1 if alert else 0)
        key = (scope, signal)
        if alert and key not in self._alerting:
            self._alerting.add(key)
            log.warning(
                "drift alert",
                extra={
                    "event": "drift_alert",
                    "scope": scope,
                    "signal": signal,
                    "score": score,
                    "threshold": self.thresholds.for_signal(signal),
                },
            )
        elif not alert and key in self._alerting:
            self._alerting.discard(key)
            log.info(
                "drift resolved", extra={"event": "drift_resolved", "scope": scope, "signal": signal, "score": score}
            )

    async def run_forever(self, interval_s: float) -> None:
        """Recompute the all-teams scope every interval; failures are counted and logged, never fatal."""
        while True:
            try:
                await self.compute(None)
                self.metrics.drift_runs.labels("ok").inc()
            except Exception as exc:  # the next run may succeed (store back, model loaded)
                self.metrics.drift_runs.labels("error").inc()
                log.error("drift computation failed", extra={"error": repr(exc)})
            await asyncio.sleep(interval_s)
