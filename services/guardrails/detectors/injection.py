"""Prompt-injection and jailbreak detector: normalisation, then rules, then the learned model.

Order matters for cost: the rules are cheap and explain themselves; the learned model scores every
window of the text with static MiniLM vectors (sub-millisecond); decoded payloads (base64, hex, ...)
are run through the same rules and model again, with the span of the encoded run in the original.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.guardrails.detectors.base import CheckInput, Finding
from services.guardrails.detectors.content import canonical_view
from services.guardrails.detectors.embeddings import StaticEmbedder
from services.guardrails.detectors.injection_rules import RULES, match_rules
from services.guardrails.detectors.normalize import Payload, View, decode_payloads, model_text, unicode_view, views

MODEL_EDGE_CHARS = 25_000


@dataclass(frozen=True)
class InjectionModel:
    """Logistic regression over static sentence vectors, read from the committed JSON artifact."""

    coef: np.ndarray
    intercept: float
    threshold: float
    window: int
    stride: int
    min_tokens: int
    metadata: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> InjectionModel:
        """Read `injection_lr.json` (plain numbers, nothing executable)."""
        data = json.loads(path.read_text())
        return cls(
            coef=np.asarray(data["coef"], dtype=np.float32),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            window=int(data["window_tokens"]),
            stride=int(data["stride_tokens"]),
            min_tokens=int(data.get("min_tokens", 0)),
            metadata={k: v for k, v in data.items() if k != "coef"},
        )

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Probability of injection for each window vector."""
        logits = vectors @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))


class InjectionDetector:
    """Layers: normalised views -> rules -> learned model; decoded payloads re-checked the same way."""

    name = "injection"

    def __init__(self, model: InjectionModel, embedder: StaticEmbedder) -> None:
        self.model = model
        self.embedder = embedder

    def _model_finding(self, view: View, threshold: float, where: tuple[int, int] | None) -> Finding | None:
        if len(view.text) > 2 * MODEL_EDGE_CHARS:
            # Bounded cost on huge texts: the model reads the head and the tail (the rules read everything).
            head = View(view.name, view.text[:MODEL_EDGE_CHARS], view.index[:MODEL_EDGE_CHARS])
            tail = View(view.name, view.text[-MODEL_EDGE_CHARS:], view.index[-MODEL_EDGE_CHARS:])
            found = [
                f
                for f in (self._model_finding(head, threshold, where), self._model_finding(tail, threshold, where))
                if f
            ]
            return max(found, key=lambda f: f.score) if found else None
        if len(self.embedder.token_ids(view.text[:400])) < self.model.min_tokens:
            # Shorter than 95 % of the training prompts: the model has no basis here ("ok" would score 0.9).
            return None
        vectors = self.embedder.embed_windows(view.text)
        scores = self.model.scores(vectors)
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < threshold:
            return None
        if where is None:
            where = self._window_span(view, best)
        return Finding(
            self.name,
            "prompt_injection",
            where[0],
            where[1],
            score,
            f"learned detector: text resembles known injection/jailbreak prompts (p={score:.2f} >= {threshold:.2f})",
        )

    def _window_span(self, view: View, window_index: int) -> tuple[int, int]:
        offsets = self.embedder.tokenizer.encode(view.text, add_special_tokens=False).offsets
        if not offsets:
            return view.span(0, len(view.text))
        # Same window layout as StaticEmbedder.embed_windows: regular strides, the last one flush with the end.
        first = min(window_index * self.model.stride, max(0, len(offsets) - self.model.window))
        last = min(len(offsets), first + self.model.window) - 1
        return view.span(offsets[first][0], offsets[last][1])

    def _rule_findings(self, view: View, where: tuple[int, int] | None, via: str) -> list[Finding]:
        out = []
        for hit in match_rules(view.text, RULES):
            span = where or view.span(hit.start, hit.end)
            reason = f"rule {hit.rule.name}: {hit.rule.reason}" + (f" ({via})" if via else "")
            out.append(Finding(self.name, hit.rule.category, span[0], span[1], hit.rule.score, reason))
        return out

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """All injection findings for the text; `config` may set model_threshold, use_model, decode_payloads."""
        threshold = float(config.get("model_threshold") or self.model.threshold)
        findings: list[Finding] = []
        all_views = views(inp.text, canonical_view(inp))
        for view in all_views:
            via = "" if view.name == "unicode" else f"after {view.name} normalisation"
            findings.extend(self._rule_findings(view, None, via))
        payloads = decode_payloads(inp.text) if config.get("decode_payloads", True) else []
        for payload in payloads:
            span = (payload.start, payload.end)
            for view in views(payload.text):
                findings.extend(self._rule_findings(view, span, f"inside a {payload.encoding}-encoded payload"))
        if config.get("use_model", True):
            findings.extend(self._model_findings(inp, all_views, payloads, threshold))
        return _dedupe(findings)

    def _model_findings(
        self, inp: CheckInput, all_views: list[View], payloads: list[Payload], threshold: float
    ) -> list[Finding]:
        """The model on each view of the text (encoded runs and blobs cut out), and on each decoded payload."""
        rewritten = model_text(inp.text, payloads)
        if rewritten is None:
            hits = [self._model_finding(view, threshold, None) for view in all_views]
        else:
            hits = [self._model_finding(unicode_view(rewritten), threshold, (0, len(inp.text)))]
        for hit, view in zip(hits, all_views, strict=False):
            if hit is not None and view.name != "unicode":
                hit.reason += f" (after {view.name} normalisation)"
        for payload in payloads:
            hit = self._model_finding(unicode_view(payload.text), threshold, (payload.start, payload.end))
            if hit is not None:
                hit.reason += f" (inside a {payload.encoding}-encoded payload)"
            hits.append(hit)
        return [h for h in hits if h is not None]


def _dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per (category, span, reason) even when several views matched the same thing."""
    seen: set[tuple[str, int, int, str]] = set()
    out = []
    for f in sorted(findings, key=lambda f: -f.score):
        key = (f.category, f.start, f.end, f.reason.split(" (")[0])
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
