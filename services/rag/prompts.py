"""Versioned prompt templates: the files in prompts/ today, the registry service when RAG_REGISTRY_URL is set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    """A chat template with `{context}`/`{question}` (or `{answer}`) slots and a version id."""

    name: str
    version: str
    system: str
    user: str

    @property
    def id(self) -> str:
        """`name@version`, what answers report as `prompt_version`."""
        return f"{self.name}@{self.version}"

    def messages(self, **values: str) -> list[dict[str, str]]:
        """Fill the template into chat messages."""
        return [
            {"role": "system", "content": self.system.format(**values)},
            {"role": "user", "content": self.user.format(**values)},
        ]


def load_default(name: str, version: str = "1") -> PromptTemplate:
    """Load a template shipped with the service."""
    data = json.loads((PROMPTS_DIR / f"{name}.v{version}.json").read_text(encoding="utf-8"))
    return PromptTemplate(data["name"], str(data["version"]), data["system"], data["user"])
