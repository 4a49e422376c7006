"""Chat examples -> token ids with a loss mask, rendered with the GGUF's own chat template (what llama.cpp serves).

The prompt (every message up to the last assistant turn, plus the generation prompt `<|im_start|>assistant\n`)
and the answer are tokenised separately and concatenated: that is exactly how the engine sees them (it tokenises
the rendered prompt, then samples the answer token by token), so the model is trained on the token boundaries it
will meet when served. Loss is on the answer and its closing `<|im_end|>` (the model learns to stop), except for a
replay row whose base answer was cut by its token budget (replay.py): that one is a prefix, trained without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

END_OF_TURN = "<|im_end|>"


def render_prompt(template: str, messages: list[dict[str, str]]) -> str:
    """The template applied to `messages` with the generation prompt (jinja2 sandbox, as transformers does)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    mask: list[int]  # 1 where the token is part of the answer (trained on), else 0


def split_example(example: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, answer) of a chat row: the answer is the last assistant message."""
    messages = example["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("a training row must end with an assistant message")
    return [{"role": m["role"], "content": m["content"]} for m in messages[:-1]], str(messages[-1]["content"])


def encode_prompt(tokenizer: Any, template: str, messages: list[dict[str, str]]) -> list[int]:
    return list(tokenizer.encode(render_prompt(template, messages), add_special_tokens=False).ids)


def encode(tokenizer: Any, template: str, example: dict[str, Any]) -> Encoded:
    prompt, answer = split_example(example)
    prompt_ids = encode_prompt(tokenizer, template, prompt)
    prefix_only = bool(example.get("replay", {}).get("cut"))
    answer_ids = list(tokenizer.encode(answer + ("" if prefix_only else END_OF_TURN), add_special_tokens=False).ids)
    return Encoded(prompt_ids + answer_ids, [0] * len(prompt_ids) + [1] * len(answer_ids))
