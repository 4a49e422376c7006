"""The services run without PyTorch: no runtime module imports torch, transformers or sentence-transformers.

They live in the `training` extra (training and export steps, and the tests that compare against the reference).
Static (AST) so it holds whether or not this venv happens to have the extra installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = {"torch", "transformers", "sentence_transformers"}
# Guardrails' embeddings module still carries the PyTorch transformer (ContextualEncoder, no longer loaded by the
# service) and the static-table distillation (a training step); moving them to services/guardrails/training or onto
# llmops_common.minilm_onnx removes this entry.
PENDING = {"services/guardrails/detectors/embeddings.py"}


def _runtime_modules() -> list[Path]:
    files = [*(ROOT / "services").rglob("*.py"), *(ROOT / "libs" / "llmops_common").rglob("*.py")]
    return [p for p in files if not {"tests", "training"} & set(p.relative_to(ROOT).parts)]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_runtime_module_imports_the_training_stack() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & TRAINING_ONLY)
        for p in _runtime_modules()
        if _imports(p) & TRAINING_ONLY
    }
    assert {k: v for k, v in offenders.items() if k not in PENDING} == {}
    stale = PENDING - offenders.keys()
    assert not stale, f"{sorted(stale)} no longer import the training stack: remove them from PENDING"
