"""Prompt templates (shipped files and registry versions) and the names MLflow and the registry accept: no network."""

from __future__ import annotations

import pytest

from services.rag.lineage import chunk_schema, dataset_name
from services.rag.prompts import PromptUnusable, from_registry, load_default
from services.rag.tracking import mlflow_key


def registry_body(template: object, version: str = "3") -> dict:
    return {"name": "rag-answer", "version": version, "template": template, "aliases": ["production"]}


def test_shipped_v2_puts_passages_in_the_system_message_and_the_question_alone_in_the_user_message() -> None:
    v2 = load_default("rag-answer", "2")
    assert (v2.id, v2.source, v2.variables) == ("rag-answer@2", "shipped", {"context", "question"})
    messages = v2.messages(context="[1] Cats eat fish.", question="What do cats eat?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].endswith("Passages:\n[1] Cats eat fish.")
    assert messages[1]["content"] == "What do cats eat?"
    with pytest.raises(KeyError, match="question"):
        v2.messages(context="x")


def test_rendering_is_one_pass_so_retrieved_text_is_never_expanded() -> None:
    v2 = load_default("rag-answer", "2")
    messages = v2.messages(context="a passage quoting {{question}} and {braces}", question="Q?")
    assert "a passage quoting {{question}} and {braces}" in messages[0]["content"]


@pytest.mark.parametrize("version", ["1", "2"])
def test_context_parts_join_to_the_plain_rendering_and_only_passages_are_marked(version: str) -> None:
    template = load_default("rag-answer", version)
    passages = ["[1] Cats eat fish.", "[2] A passage quoting {{question}}."]
    plain = template.messages(context="\n\n".join(passages), question="What do cats eat?")
    parted = template.messages_with_context(passages, question="What do cats eat?")
    for a, b in zip(plain, parted, strict=True):
        content = b["content"] if isinstance(b["content"], str) else "".join(p["text"] for p in b["content"])
        assert (a["role"], a["content"]) == (b["role"], content)
    marked = [
        p["text"].strip()
        for m in parted
        if isinstance(m["content"], list)
        for p in m["content"]
        if p.get("llmops_context")
    ]
    assert marked == passages
    assert template.messages_with_context([], question="Q?") == template.messages(context="", question="Q?")


def test_a_shipped_template_standing_in_for_the_registry_says_so() -> None:
    fallback = load_default("rag-answer", "2").as_fallback()
    assert fallback.id == "rag-answer@2 (shipped)" and fallback.view()["fallback"] is True


def test_registry_chat_templates_are_used_as_they_are() -> None:
    template = [
        {"role": "system", "content": "Use the passages.\n{{ context }}"},
        {"role": "user", "content": "{{question}}"},
    ]
    prompt = from_registry(registry_body(template))
    assert (prompt.id, prompt.source) == ("rag-answer@3", "registry")
    assert prompt.messages(context="[1] x", question="q") == [
        {"role": "system", "content": "Use the passages.\n[1] x"},
        {"role": "user", "content": "q"},
    ]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("Passages: {{context}} Question: {{question}}", "not a chat template"),
        ([{"role": "system", "content": "{{context}}"}], "variables"),
        ([{"role": "system", "content": "{{context}} {{tone}}"}, {"role": "user", "content": "{{question}}"}], "tone"),
        ([{"role": "user", "content": "{% if context %}{{context}}{% endif %} {{question}}"}], "Jinja"),
        ([{"role": "tool", "content": "{{context}} {{question}}"}], "system/user/assistant"),
        ([], "not a chat template"),
    ],
)
def test_registry_templates_this_service_cannot_fill_are_refused(template: object, reason: str) -> None:
    with pytest.raises(PromptUnusable, match=reason):
        from_registry(registry_body(template))


def test_names_mlflow_and_the_registry_accept() -> None:
    assert mlflow_key("recall@5") == "recall_at_5" and mlflow_key("answer.ndcg@10") == "answer.ndcg_at_10"
    assert mlflow_key("count.indexed") == "count.indexed" and mlflow_key("a{b}") == "a_b_"
    assert dataset_name("team-a", "notes") == "rag.team-a.notes"
    assert dataset_name("acme corp/eu", "notes") == "rag.acme-corp-eu.notes"
    schema = chunk_schema({"embedding_dimension": 384, "embedding_model": "all-MiniLM-L6-v2"})
    assert schema["dense"] == "float32[384] all-MiniLM-L6-v2" and schema["text"] == "string"
