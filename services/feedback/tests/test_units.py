"""Unit tests without servers: settings, event parsing, rules, redaction, what is kept of guarded requests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from services.feedback.events import InvalidEvent, TraceEvent, parse_entry, prompt_text
from services.feedback.privacy import dead_letter_text, withhold_raw_text
from services.feedback.redact import redact
from services.feedback.rules import LabelRules, is_refusal
from services.feedback.settings import REPO_ROOT, FeedbackSettings
from services.feedback.store.store import Store
from services.feedback.tests.helpers import make_event

PII_SET = Path("/work/shared/datasets/pii/generated_small.json")


def test_settings_database_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """FEEDBACK_DATABASE_URL wins over DATABASE_URL; neither means SQLite under .llmops/ in the repo."""
    monkeypatch.delenv("FEEDBACK_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = FeedbackSettings()
    assert s.database_url is None and s.port == 8004 and s.stream_key == "llmops:events"
    assert s.resolved_path(s.sqlite_path) == REPO_ROOT / ".llmops/data/feedback/feedback.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert FeedbackSettings().database_url == "postgresql://u@h/db"
    monkeypatch.setenv("FEEDBACK_DATABASE_URL", "postgresql+psycopg://u@h/fb")
    assert FeedbackSettings().database_url == "postgresql+psycopg://u@h/fb"
    assert Store.from_settings("postgresql+psycopg://u@h/fb", Path("x")).dialect == "postgresql"
    with pytest.raises(ValueError, match="unsupported"):
        Store.from_settings("mysql://h/db", Path("x"))


def test_parse_entry_accepts_schema_1_and_rejects_the_rest() -> None:
    """Valid events parse (extra fields ignored); anything else is an InvalidEvent with a reason."""
    ev = parse_entry({b"event": orjson.dumps(make_event(new_field=1, prompt="hello"))})
    assert ev.prompt == "hello" and ev.endpoint == "chat"
    for fields, reason in (
        ({}, "no 'event'"),
        ({b"event": b"[1]"}, "not a JSON object"),
        ({b"event": orjson.dumps(make_event(schema=2))}, "unsupported"),
        ({b"event": orjson.dumps(make_event(status="x"))}, "schema 1"),
    ):
        with pytest.raises(InvalidEvent, match=reason):
            parse_entry(fields)


def test_prompt_text_and_rules() -> None:
    """User text is taken from chat messages (content parts too); rules name their reasons."""
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
        {"role": "user", "content": "there"},
    ]
    assert prompt_text(msgs) == "hi\nthere" and prompt_text(None) == ""
    assert prompt_text(["a", "b"]) == "a\nb"
    assert parse_entry({b"event": orjson.dumps(make_event(endpoint="completions", prompt=["x"]))}).prompt == ["x"]
    rules = LabelRules(low_retrieval_score=0.3, low_logprob=-1.5)
    ev = parse_entry({b"event": orjson.dumps(make_event(mean_logprob=None))})
    assert rules.reasons(ev) == []
    assert is_refusal("I'm sorry, but I can't help with that.") and not is_refusal("Sure! Here it is.")


def test_redaction_on_the_presidio_sample() -> None:
    """Every structured PII span of the shared sample is removed, and PII-free sentences are left alone."""
    if not PII_SET.exists():
        pytest.skip("shared PII sample not present")
    records = json.loads(PII_SET.read_text())
    kinds = {"PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "EMAIL_ADDRESS"}
    checked = 0
    for rec in records:
        out, n = redact(rec["full_text"])
        for span in rec["spans"]:
            if span["entity_type"] in kinds:
                checked += 1
                assert span["entity_value"] not in out, (span, out)
        if not rec["spans"]:
            assert n == 0, out
    assert checked >= 20
    assert redact("version 3.11.2 in 2024, key sk-abcdefghijklmnopqrstu")[0] == "version 3.11.2 in 2024, key [SECRET]"


def test_blocked_and_redacted_requests_keep_no_raw_text() -> None:
    """Row 7 (feedback side): block keeps nothing, redact keeps redacted text; both are marked; allow is untouched."""
    pii = "I am jo@example.com, card 4111 1111 1111 1111"
    chat = [{"role": "system", "content": pii}, {"role": "user", "content": [{"type": "text", "text": pii}]}]
    base = make_event(prompt=chat, response=pii)

    def kept(**fields: object) -> TraceEvent:
        return withhold_raw_text(TraceEvent.model_validate(base | fields))

    blocked = kept(guardrails=[{"stage": "output", "decision": "block", "findings": []}])
    assert (blocked.prompt, blocked.response, blocked.text_withheld) == (None, None, "blocked")
    assert kept(status=400, error_code="guardrail_blocked").text_withheld == "blocked"
    redacted = kept(guardrails=[{"stage": "input", "decision": "redact", "findings": []}])
    assert redacted.text_withheld == "redacted" and "jo@example.com" not in orjson.dumps(redacted.model_dump()).decode()
    assert redacted.prompt[0] == {"role": "system", "content": "I am [EMAIL], card [CREDIT_CARD]"}  # type: ignore[index]
    plain = kept(prompt="hi jo@example.com", guardrails=[{"stage": "input", "decision": "redact", "findings": []}])
    assert plain.prompt == "hi [EMAIL]"
    allowed = kept(guardrails=[{"stage": "input", "decision": "allow", "findings": []}])
    assert allowed.prompt == chat and allowed.text_withheld is None
    assert dead_letter_text(orjson.dumps(base | {"guardrails": [{"decision": "block"}], "endpoint": "x"})) is None
    assert dead_letter_text(b'{"broken": "jo@example.com"') == '{"broken": "[EMAIL]"'
    assert dead_letter_text(b'not json "decision": "block" jo@example.com') is None


def test_prometheus_drift_rules() -> None:
    """The alert rule file is valid and fires on a drift score over its threshold (promtool unit test)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    # The rules ship with the compose Prometheus (deploy/compose/prometheus/rules), like every other rule file.
    folder = Path(__file__).resolve().parents[3] / "deploy" / "compose" / "prometheus" / "tests"
    for args in (["check", "rules", "../rules/feedback-drift.yml"], ["test", "rules", "feedback-drift.test.yml"]):
        done = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
