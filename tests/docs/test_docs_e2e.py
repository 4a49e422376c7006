"""End to end: run every runnable ```bash block of the module pages and the README's walk-through against the
platform started as `make up` starts it (the `platform` fixture of tests/docs/conftest.py; a running one is reused).

Module pages: blocks run in page order, each in its own `bash` from the repository root (blocks save what later
blocks need under .llmops/). A block passes when it exits 0 and, where the page gives an `<!-- expected -->`
output block (the convention of tests/docs/runbook.py), prints those lines — the pages show some errors on
purpose, so a block without one only has to exit 0. The README's walk-through loads `.llmops/env` once and uses it
in later blocks, as one terminal session does, so its blocks run together in one `bash`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.docs.helpers import ROOT
from tests.docs.runbook import block_env, failed_calls, missing_lines, runnable_blocks
from tests.docs.test_docs import MODULE_PAGES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # the first one may start the platform


@pytest.mark.parametrize("page", MODULE_PAGES, ids=lambda p: p.name)
def test_module_commands_run(page: Path, platform: dict[str, str], tmp_path: Path) -> None:
    """Every runnable block of the page exits 0, every HTTP call it makes succeeds (unless the block says
    `# expect HTTP ...`), and it prints its expected lines, against the running platform."""
    env = block_env(dict(os.environ), tmp_path / "curl")
    failures: list[str] = []  # failed calls, gathered so one run names every block that needs a fix
    for block in runnable_blocks(page):
        result = subprocess.run(
            ["bash", "-c", block.command], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
        )
        detail = f"{page.name} line {block.line} exited {result.returncode}:\n{block.command}\n{result.stderr[-2000:]}"
        assert result.returncode == 0, detail
        failures += [f"line {block.line}: {call}" for call in failed_calls(block.command, result.stderr)]
        missing = missing_lines(block.expected, result.stdout)
        assert not missing, f"{page.name} line {block.line}: expected lines not printed: {missing}\n{result.stdout}"
    assert not failures, (
        f"{page.name}: calls that failed (mark a block that fails on purpose `# expect HTTP ...`)\n"
        + ("\n".join(failures))
    )


def test_readme_walk_through(platform: dict[str, str], tmp_path: Path) -> None:
    """The README's walk-through, in one shell: every call succeeds, the chat answers 200, the stream ends, the
    new key is shown."""
    script = "set -e\n" + "\n".join(block.command for block in runnable_blocks(ROOT / "README.md"))
    env = block_env(dict(os.environ), tmp_path / "curl")
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert not failed_calls(script, result.stderr), result.stderr[-3000:]
    for wanted in ("HTTP/1.1 200 OK", "x-request-id: req_", "data: [DONE]", '"key":"sk-llmops-'):
        assert wanted in result.stdout, f"{wanted!r} not in the README walk-through's output:\n{result.stdout}"
