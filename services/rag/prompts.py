"""Versioned prompt templates: the files shipped in prompts/, or a version from the registry (registry.py).

Templates use MLflow's double-brace placeholders (`{{context}}`), the registry's own syntax, so a shipped
file and a registry version are read, compared and rendered the same way.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

PROMPTS_DIR = Path(__file__).parent / "prompts"
ANSWER_VARIABLES = frozenset({"context", "question"})
_VARIABLE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_ROLES = frozenset({"system", "user", "assistant"})


class PromptUnusable(ValueError):
    """A template this service cannot fill (wrong shape, Jinja, unknown or missing variables)."""


@dataclass(frozen=True)
class PromptTemplate:
    """A chat template (role, content-with-placeholders pairs) with its name, version and origin."""

    name: str
    version: str
    template: tuple[tuple[str, str], ...]
    source: str = "shipped"  # "shipped" (a file in prompts/) or "registry"
    # True when the registry was configured but could not supply the template, so the shipped one stands in.
    fallback: bool = False

    @property
    def id(self) -> str:
        """What answers report as `prompt_version`: `name@version`, marked when it is a stand-in."""
        # Registry version numbers and shipped file versions are different sequences: without the mark a
        # stand-in `rag-answer@2` could be mistaken for the registry's version 2.
        return f"{self.name}@{self.version}" + (" (shipped)" if self.fallback else "")

    @property
    def variables(self) -> set[str]:
        """Every `{{name}}` the template uses."""
        return {v for _, content in self.template for v in _VARIABLE.findall(content)}

    def content(self, role: str) -> str:
        """The first message of a role ("" if none), for displays that show system and user text."""
        return next((content for r, content in self.template if r == role), "")

    def messages(self, **values: str) -> list[dict[str, str]]:
        """Fill the template into chat messages; raises KeyError naming a variable without a value."""
        missing = self.variables - set(values)
        if missing:
            raise KeyError(f"prompt {self.id} needs {sorted(missing)}")

        def fill(match: re.Match[str]) -> str:
            return values[match.group(1)]

        # One pass: a retrieved passage that happens to contain "{{question}}" is inserted, never expanded.
        return [{"role": role, "content": _VARIABLE.sub(fill, content)} for role, content in self.template]

    def messages_with_context(self, passages: list[str], **values: str) -> list[dict[str, Any]]:
        """`messages`, with `{{context}}` as one text part per passage, each marked as retrieved context.

        The gateway then checks each passage as content (what the model reads) and the template's own words
        as input. Joined, the parts are the text `messages(context="\n\n".join(passages))` would send.
        """
        mark = f"\x00{secrets.token_hex(8)}\x00"  # where the context goes; no question can guess it
        out: list[dict[str, Any]] = []
        for message in self.messages(**values, context=mark):  # validates the variables too
            pieces = message["content"].split(mark)
            if len(pieces) == 1 or not passages:
                out.append({"role": message["role"], "content": message["content"].replace(mark, "")})
                continue
            parts: list[dict[str, Any]] = []
            for k, piece in enumerate(pieces):
                if piece:
                    parts.append({"type": "text", "text": piece})
                if k < len(pieces) - 1:
                    last = len(passages) - 1
                    parts.extend(
                        {"type": "text", "text": p + ("" if i == last else "\n\n"), "llmops_context": True}
                        for i, p in enumerate(passages)
                    )
            out.append({"role": message["role"], "content": parts})
        return out

    def as_fallback(self) -> PromptTemplate:
        """This shipped template marked as standing in for an unavailable registry version."""
        return dataclasses.replace(self, fallback=True)

    def view(self) -> dict[str, Any]:
        """JSON form for GET /v1/prompts/answer."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "fallback": self.fallback,
            "system": self.content("system"),
            "user": self.content("user"),
            "messages": [{"role": r, "content": c} for r, c in self.template],
        }


class PromptSource(Protocol):
    """Where the answer path gets its template from, read once per answer."""

    def current(self) -> PromptTemplate: ...


class StaticPrompt:
    """A fixed template (no registry configured)."""

    def __init__(self, template: PromptTemplate) -> None:
        self.template = template

    def current(self) -> PromptTemplate:
        """The one template."""
        return self.template


def load_default(name: str, version: str = "1") -> PromptTemplate:
    """Load a template shipped with the service (prompts/<name>.v<version>.json: `system` and `user`)."""
    data = json.loads((PROMPTS_DIR / f"{name}.v{version}.json").read_text(encoding="utf-8"))
    return PromptTemplate(data["name"], str(data["version"]), (("system", data["system"]), ("user", data["user"])))


def from_registry(body: dict[str, Any], required: Iterable[str] = ANSWER_VARIABLES) -> PromptTemplate:
    """A registry prompt version (GET /v1/prompts/{name}/aliases/{alias}) as a template, if this service can fill it.

    Only chat templates qualify: a text template would put the passages in the user message, which the
    gateway's input guardrails check as the user's own words (the reason rag-answer v2 exists).
    """
    raw = body.get("template")
    if not isinstance(raw, list) or not raw:
        raise PromptUnusable("it is not a chat template (a list of role/content messages)")
    template: list[tuple[str, str]] = []
    for message in raw:
        shaped = isinstance(message, dict) and isinstance(message.get("content"), str)
        if not shaped or message.get("role") not in _ROLES:
            raise PromptUnusable(f"message {message!r} is not a system/user/assistant message with text content")
        if "{%" in message["content"]:
            raise PromptUnusable("Jinja templates are not supported; use {{variable}} placeholders")
        template.append((message["role"], message["content"]))
    prompt = PromptTemplate(str(body["name"]), str(body["version"]), tuple(template), source="registry")
    wanted = set(required)
    if prompt.variables != wanted:
        raise PromptUnusable(f"it uses the variables {sorted(prompt.variables)}; this service fills {sorted(wanted)}")
    return prompt
