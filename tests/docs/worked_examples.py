"""Run the worked examples of docs/extending.md as a student would apply them: the new file, the registry line,
then the *Try it* block. `python -m tests.docs.worked_examples "<section heading>"` runs one section in this
(fresh) interpreter, so the registries it extends are not shared with other tests.

Markers, each on the line before a ```python block:
- `<!-- file: PATH -->`: the new file; loaded as the module PATH names (as if saved there).
- `<!-- registry: PATH NAME -->`: the line(s) added to the dict NAME of the module at PATH, evaluated in that
  module's namespace plus the new modules (by their last name, as `from package import module` binds them).
- `<!-- run -->`: executed; what it prints must equal the ```text block that follows it.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "extending.md"
_BLOCK = re.compile(
    r"<!-- (?P<marker>file|registry|run)(?::\s*(?P<args>[^>]*?))? -->\n```python\n(?P<code>.*?)\n```"
    r"(?:\n\n```text\n(?P<expected>.*?)\n```)?",
    re.S,
)


@dataclass
class Example:
    """One section's worked example."""

    heading: str
    files: dict[str, str] = field(default_factory=dict)  # path -> code
    registrations: list[tuple[str, str, str]] = field(default_factory=list)  # (path, dict name, lines)
    runs: list[tuple[str, str]] = field(default_factory=list)  # (code, expected output)


def sections(text: str) -> dict[str, str]:
    """`## ` heading -> the section's text."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def examples(text: str | None = None) -> list[Example]:
    """Every section of the page that holds a worked example."""
    out = []
    for heading, body in sections(text if text is not None else PAGE.read_text()).items():
        ex = Example(heading)
        for m in _BLOCK.finditer(body):
            args = (m.group("args") or "").split()
            if m.group("marker") == "file":
                ex.files[args[0]] = m.group("code")
            elif m.group("marker") == "registry":
                ex.registrations.append((args[0], args[1], m.group("code")))
            else:
                ex.runs.append((m.group("code"), m.group("expected") or ""))
        if ex.files or ex.registrations or ex.runs:
            out.append(ex)
    return out


def _module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def apply(ex: Example) -> dict[str, types.ModuleType]:
    """Load the new files as their modules and add the registry lines; the new modules by their last name."""
    new: dict[str, types.ModuleType] = {}
    for path, code in ex.files.items():
        name = _module_name(path)
        if (ROOT / path).exists():
            raise FileExistsError(f"{path} exists in the repository: the example must add a new file")
        module = types.ModuleType(name)
        module.__file__ = str(ROOT / path)
        sys.modules[name] = module  # before running it: pydantic and dataclasses look their module up
        exec(compile(code, str(ROOT / path), "exec"), module.__dict__)
        package, _, last = name.rpartition(".")
        setattr(importlib.import_module(package), last, module)
        new[last] = module
    for path, dict_name, lines in ex.registrations:
        registry = importlib.import_module(_module_name(path))
        entries = eval("{" + lines + "}", {**vars(registry), **new})  # the page's own line
        getattr(registry, dict_name).update(entries)
    return new


def main(heading: str) -> None:
    """Apply one section's example and run its blocks, printing what they print."""
    ex = next(e for e in examples() if e.heading == heading)
    apply(ex)
    for code, _ in ex.runs:
        exec(compile(code, f"{PAGE}:{heading}", "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main(sys.argv[1])
