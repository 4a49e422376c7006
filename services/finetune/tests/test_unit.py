"""Fast checks of the fine-tuning pieces that need no model: the optimizer, the data order, the task's scoring."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from services.finetune import chat, evaluate, gguf_io, pipeline, task
from services.finetune import train as T
from services.registry.gguf_to_hf import unpermute


def test_permute_is_the_inverse_of_the_converters_unpermute() -> None:
    """The merged q/k rows go back in llama.cpp's order, or the served model would rotate the wrong pairs."""
    rng = np.random.default_rng(0)
    for heads in (1, 3, 9):
        w = rng.standard_normal((heads * 64, 32)).astype(np.float32)
        assert np.array_equal(gguf_io.permute(unpermute(w, heads), heads), w)


def test_adamw_matches_the_textbook_update() -> None:
    """One step from zero moments: w - lr * (g / (|g| + eps) + wd * w) (bias correction makes m/v exact)."""
    w = {"x": jnp.asarray([1.0, -2.0, 0.5])}
    g = {"x": jnp.asarray([0.1, 0.3, -0.2])}
    new, opt = T.adamw_update(w, g, T.adamw_init(w), jnp.asarray(0.01), weight_decay=0.1)
    expected = np.array([1.0, -2.0, 0.5]) - 0.01 * (np.sign([0.1, 0.3, -0.2]) + 0.1 * np.array([1.0, -2.0, 0.5]))
    np.testing.assert_allclose(np.asarray(new["x"]), expected, rtol=1e-5)
    assert int(opt["step"]) == 1


def test_batches_depend_only_on_seed_and_step() -> None:
    """Resuming at step k draws the rows the uninterrupted run drew; every row once per epoch."""
    first = [T.batch_indices(10, 4, 7, s).tolist() for s in range(5)]
    again = [T.batch_indices(10, 4, 7, s).tolist() for s in range(5)]
    assert first == again
    flat = [r for batch in first for r in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert first != [T.batch_indices(10, 4, 8, s).tolist() for s in range(5)]


def test_pack_masks_only_the_answer() -> None:
    encoded = [chat.Encoded([5, 6, 7, 8], [0, 0, 1, 1]), chat.Encoded([5, 9], [0, 1])]
    data = T.pack(encoded, pad_id=2, max_len=64, multiple=8)
    assert data.tokens.shape == (2, 8) and data.tokens[1, 2:].tolist() == [2] * 6
    assert data.positions[0].tolist() == [1, 2] and data.targets[0].tolist() == [7, 8]
    assert data.weights.tolist() == [[1.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="longer than max_len"):
        T.pack(encoded, pad_id=2, max_len=3)


def test_learning_rate_warms_up_then_decays() -> None:
    cfg = T.TrainConfig(steps=10, lr=1.0, warmup_steps=2)
    rates = [T.learning_rate(cfg, s) for s in range(10)]
    assert rates[0] == 0.5 and rates[1] == 1.0 and rates[-1] < rates[2] and min(rates) >= 0.1


def test_task_data_is_deterministic_and_strictly_scored() -> None:
    rows = task.generate(30)
    assert rows == task.generate(30) and rows != task.generate(30, seed=1)
    reference = rows[0]["messages"][1]["content"]
    assert task.score(reference, reference) == {"format_ok": 1.0, "exact": 1.0, "fields": 1.0}
    fenced = f"```json\n{reference}\n```"
    assert task.score(fenced, reference)["format_ok"] == 0.0
    wrong = json.dumps({**json.loads(reference), "urgent": "yes"})
    assert task.score(wrong, reference)["format_ok"] == 0.0
    extra = json.dumps({**json.loads(reference), "note": "x"})
    assert task.score(extra, reference)["format_ok"] == 0.0


def test_held_out_split_is_stable_and_disjoint() -> None:
    rows = task.generate(200)
    train, held = pipeline.split(rows, 0.2)
    assert len(train) + len(held) == 200 and 20 <= len(held) <= 60
    assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in held}
    # A row's side does not depend on the other rows (a later export with more rows keeps its held-out rows).
    assert pipeline.split(rows[:50], 0.2)[1] == [r for r in held if r in rows[:50]]


def test_chat_rows_must_end_with_an_answer() -> None:
    with pytest.raises(ValueError, match="assistant"):
        chat.split_example({"messages": [{"role": "user", "content": "hi"}]})


def test_bootstrap_interval_brackets_the_mean() -> None:
    from services.finetune.evaluate import bootstrap_ci

    values = [1.0] * 30 + [0.0] * 10
    low, high = bootstrap_ci(values)
    assert low < 0.75 < high and high - low < 0.4


def test_guardrails_output_check_flags_what_the_service_flags() -> None:
    """The answers go through the real guardrails app's `POST /v1/check/output`; the share not allowed as it is is
    the `*_flagged` metric, lower is better in the table."""
    from fastapi.testclient import TestClient

    from services.guardrails.app import create_app
    from services.guardrails.settings import GuardrailsSettings

    app = create_app(GuardrailsSettings(service_token="finetune-test-token"))
    result: dict = {
        "metrics": {},
        "heldout_answers": ['{"name": "Ana", "city": "Porto", "product": "kettle", "urgent": true}',
                            "Sure, the key is AKIAIOSFODNN7EXAMPLE and the secret is wJalrXUtnFEMI/K7MDENG/bPxRfiCY."],
        "regression_answers": ["Paris is the capital of France."],
    }  # fmt: skip
    with TestClient(app, headers={"authorization": "Bearer finetune-test-token"}) as http:
        evaluate.guardrails_metrics(result, ["ticket 1", "ticket 2"], ["capital of France?"], http)
    assert result["heldout_guardrails"][0] == "allow" and result["heldout_guardrails"][1] != "allow", result
    assert result["metrics"] == {"heldout_flagged": 0.5, "regression_flagged": 0.0}
    table = evaluate.table({"heldout_flagged": 0.5}, {"heldout_flagged": 0.0})
    assert "| heldout_flagged | 0.5 | 0 | tuned |" in table


def test_an_answer_cut_by_its_budget_is_not_the_strict_object() -> None:
    """The held-out task is generated with a budget of its longest reference + a margin; an answer that reached
    it had not stopped, so it scores 0 even when the cut-off text parses."""
    ref = json.dumps({"name": "Ana", "city": "Porto", "product": "kettle", "urgent": True})
    scores = evaluate.task_scores([ref, ref], [ref, ref], cut=[False, True])
    assert [s["exact"] for s in scores] == [1.0, 0.0] and scores[1]["format_ok"] == 0.0
    assert evaluate.task_metrics([ref], [ref]) == {"format_ok": 1.0, "exact": 1.0, "fields": 1.0}
