"""Prompt-injection and jailbreak detector: normalisation, then rules, then the learned model.

Two check modes (`CheckInput.mode`): `input` (what a user says: direct injection, jailbreak) and `content`
(what the model reads: documents, e-mails, tool results with instructions planted in them). Both run the
same rules; each has its own learned model and threshold (`injection_model.py`), because "please grant
Amy access to the lock" is a fine thing for a user to say and an attack inside a product review.

Order matters for cost: the rules are cheap and explain themselves; the learned model scores every window
of the text (hashed character/word-piece n-grams and a static MiniLM vector, well under a millisecond per
1,000 characters); decoded payloads (base64, hex, ...) go through the same rules and model again, with the
span of the encoded run in the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.guardrails.detector_config import EXTRACTION_EXEMPT_ROLES, HARMFUL_MODEL_ROLES
from services.guardrails.detectors.base import CheckInput, Finding
from services.guardrails.detectors.content import canonical_view
from services.guardrails.detectors.features import (
    WINDOW_CHARS,
    FeatureExtractor,
    WindowFeatures,
    window_starts,
    windows,
)
from services.guardrails.detectors.harmful_rules import CATEGORY, find_harmful
from services.guardrails.detectors.injection_model import InjectionModel
from services.guardrails.detectors.injection_rules import RULES, match_rules
from services.guardrails.detectors.model_source import ModelWatcher
from services.guardrails.detectors.normalize import (
    Payload,
    View,
    collapsed_view,
    decode_payloads,
    model_text,
    unicode_view,
    views,
)

MODEL_EDGE_CHARS = 25_000
MIN_MODEL_CHARS = 3  # "ok", "hi": nothing for a model to read
EXTRACTION = "prompt_extraction"  # the category some roles do not get (extraction_exempt_roles)


class InjectionDetector:
    """Layers: normalised views -> rules -> learned model; decoded payloads re-checked the same way.

    The model is held behind `swap()` so a newly promoted registry version replaces it between checks
    (one attribute assignment: a check in flight keeps the model it started with)."""

    name = "injection"

    def __init__(self, model: InjectionModel, extractor: FeatureExtractor) -> None:
        self.model = model
        self.extractor = extractor
        self.watcher: ModelWatcher | None = None  # set by the loader when a registry is configured

    def swap(self, model: InjectionModel) -> None:
        """Serve `model` from the next check on."""
        self.model = model

    def _window_features(self, parts: list[str], memo: _Memo | None) -> list[WindowFeatures]:
        """Features of each window; `memo` shares them between the models that read the same view."""
        if memo is None:
            return [self.extractor.window(w) for w in parts]
        for w in parts:
            if w not in memo.features:
                memo.features[w] = self.extractor.window(w)
        return [memo.features[w] for w in parts]

    def _harmful_finding(self, model: InjectionModel, view: View, threshold: float, memo: _Memo) -> Finding | None:
        """The learned harmful-request model on the canonical view (input mode; the artifact may have none)."""
        harmful = model.harmful
        flat = memo.collapsed(view)
        if harmful is None or len(flat.text) < MIN_MODEL_CHARS or len(flat.text) > 2 * MODEL_EDGE_CHARS:
            return None  # a harmful request is short; a huge text is read by the rules and the injection model
        parts = windows(flat.text)
        scores = harmful.scores(self._window_features(parts, memo))
        best = int(np.argmax(scores))
        if scores[best] < threshold:
            return None
        start, end = _window_span(flat, best, len(parts))
        reason = (
            f"learned detector (harmful requests): asks for help with serious harm (p={scores[best]:.2f} >= "
            f"{threshold:.2f})"
        )
        return Finding(self.name, CATEGORY, start, end, float(scores[best]), reason)

    def _model_finding(
        self,
        model: InjectionModel,
        mode: str,
        view: View,
        threshold: float,
        where: tuple[int, int] | None,
        memo: _Memo | None = None,
    ) -> Finding | None:
        if len(view.text) > 2 * MODEL_EDGE_CHARS:
            # Bounded cost on huge texts: the model reads the head and the tail (the rules read everything).
            head = View(view.name, view.text[:MODEL_EDGE_CHARS], view.index[:MODEL_EDGE_CHARS])
            tail = View(view.name, view.text[-MODEL_EDGE_CHARS:], view.index[-MODEL_EDGE_CHARS:])
            found = [
                f
                for f in (
                    self._model_finding(model, mode, head, threshold, where),
                    self._model_finding(model, mode, tail, threshold, where),
                )
                if f
            ]
            return max(found, key=lambda f: f.score) if found else None
        flat = memo.collapsed(view) if memo is not None else collapsed_view(view)
        if len(flat.text) < MIN_MODEL_CHARS:
            return None
        parts = windows(flat.text)
        scores = model.modes[mode].scores(self._window_features(parts, memo))
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < threshold:
            return None
        if where is None:
            where = _window_span(flat, best, len(parts))
        return Finding(
            self.name,
            "prompt_injection" if mode == "input" else "indirect_injection",
            where[0],
            where[1],
            score,
            f"learned detector ({mode} mode): text resembles known injection/jailbreak attacks "
            f"(p={score:.2f} >= {threshold:.2f})",
        )

    def _rule_findings(self, view: View, where: tuple[int, int] | None, via: str) -> list[Finding]:
        out = []
        for hit in match_rules(view.text, RULES):
            span = where or view.span(hit.start, hit.end)
            reason = f"rule {hit.rule.name}: {hit.rule.reason}" + (f" ({via})" if via else "")
            out.append(Finding(self.name, hit.rule.category, span[0], span[1], hit.rule.score, reason))
        return out

    def run(self, inp: CheckInput, config: dict[str, Any]) -> list[Finding]:
        """All injection findings for the text; `config` may set model_threshold, use_model, decode_payloads."""
        model = self.model  # one model for the whole check, even if a swap happens meanwhile
        mode = "content" if inp.mode == "content" else "input"
        threshold = float(config.get("model_threshold") or model.modes[mode].threshold)
        findings: list[Finding] = []
        memo = _Memo()  # collapsed views and window features, computed once for both models
        all_views = views(inp.text, canonical_view(inp))
        for view in all_views:
            via = "" if view.name == "unicode" else f"after {view.name} normalisation"
            findings.extend(self._rule_findings(view, None, via))
        if mode == "input" and config.get("harmful_requests", True):
            # A plainly harmful request (its own category; the policy's `actions` decides what it does). Input
            # only: a news article about a bombing is a document the model may read, not a request.
            hit = find_harmful(all_views[0].text)
            if hit is not None:
                start, end = all_views[0].span(hit.start, hit.end)
                findings.append(Finding(self.name, hit.rule.category, start, end, hit.rule.score,
                                        f"rule {hit.rule.name}: {hit.rule.reason}"))  # fmt: skip
            elif model.harmful is not None and config.get("use_model", True) and _user_words(inp, config):
                harmful_threshold = float(config.get("harmful_threshold") or model.harmful.threshold)
                found = self._harmful_finding(model, all_views[0], harmful_threshold, memo)
                if found is not None:
                    findings.append(found)
        payloads = decode_payloads(inp.text) if config.get("decode_payloads", True) else []
        for payload in payloads:
            span = (payload.start, payload.end)
            for view in views(payload.text):
                findings.extend(self._rule_findings(view, span, f"inside a {payload.encoding}-encoded payload"))
        if config.get("use_model", True):
            findings.extend(self._model_findings(model, mode, inp, all_views, payloads, threshold, memo))
        if _extraction_exempt(inp, config):
            findings = [f for f in findings if f.category != EXTRACTION]
        return _dedupe(findings)

    def _model_findings(
        self,
        model: InjectionModel,
        mode: str,
        inp: CheckInput,
        all_views: list[View],
        payloads: list[Payload],
        threshold: float,
        memo: _Memo,
    ) -> list[Finding]:
        """The model on each view of the text (encoded runs and blobs cut out), and on each decoded payload."""
        rewritten = model_text(inp.text, payloads)
        if rewritten is None:
            hits = [self._model_finding(model, mode, view, threshold, None, memo) for view in all_views]
        else:
            hits = [self._model_finding(model, mode, unicode_view(rewritten), threshold, (0, len(inp.text)))]
        for hit, view in zip(hits, all_views, strict=False):
            if hit is not None and view.name != "unicode":
                hit.reason += f" (after {view.name} normalisation)"
        for payload in payloads:
            hit = self._model_finding(model, mode, unicode_view(payload.text), threshold, (payload.start, payload.end))
            if hit is not None:
                hit.reason += f" (inside a {payload.encoding}-encoded payload)"
            hits.append(hit)
        return [h for h in hits if h is not None]


@dataclass
class _Memo:
    """What one check computes once and both models read: collapsed views (by their text) and window features."""

    features: dict[str, WindowFeatures] = field(default_factory=dict)
    views: dict[tuple[str, str], View] = field(default_factory=dict)

    def collapsed(self, view: View) -> View:
        """`collapsed_view(view)`, once per view (its name and text: one view of the checked text)."""
        key = (view.name, view.text)
        if key not in self.views:
            self.views[key] = collapsed_view(view)
        return self.views[key]


def _user_words(inp: CheckInput, config: dict[str, Any]) -> bool:
    """Whether the learned harmful-request model reads this text: a single-text check (what a user sends), or
    a message of a role the policy names (default: every input-mode role, all of which an API caller writes).
    RAG's marked passages and tool results are content mode (never read here at all)."""
    return inp.role is None or inp.role in config.get("harmful_model_roles", HARMFUL_MODEL_ROLES)


def _extraction_exempt(inp: CheckInput, config: dict[str, Any]) -> bool:
    """Whether prompt_extraction findings are dropped for this text: an input-mode message of a role the policy
    exempts (default system and developer: the caller's own prompt, whose secrets are the caller's; see
    detector_config.EXTRACTION_EXEMPT_ROLES). Never a single-text check, a user message or content."""
    return inp.mode == "input" and inp.role in config.get("extraction_exempt_roles", EXTRACTION_EXEMPT_ROLES)


def _window_span(flat: View, window_index: int, count: int) -> tuple[int, int]:
    """Original offsets of the window `features.windows` produced at `window_index`."""
    if count == 1:
        return flat.span(0, len(flat.text))
    start = window_starts(len(flat.text))[window_index]
    return flat.span(start, start + WINDOW_CHARS)


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
