"""End to end: run every runnable ```bash block of the module pages and the README's walk-through against the
platform started as `make up` starts it (the `platform` fixture of tests/docs/conftest.py; a running one is reused).

Module pages: blocks run in page order, each in its own `bash` from the repository root (blocks save what later
blocks need under .llmops/). A block passes when it exits 0 and, where the page gives an `<!-- expected -->`
output block (the convention of tests/docs/runbook.py), prints those lines — the pages show some errors on
purpose, so a block without one only has to exit 0. The README's walk-through loads `.llmops/env` once and uses it
in later blocks, as one terminal session does, so its blocks run together in one `bash`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.docs.helpers import ROOT
from tests.docs.runbook import block_env, failed_calls, missing_lines, runnable_blocks
from tests.docs.test_docs import MODULE_PAGES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # the first one may start the platform
# Module 9 trains, evaluates two models and starts a second inference deployment: a few minutes on 2 free cores,
# several times that on a loaded CI machine (measured: make up 8 min, make finetune ~10 min at load average 17-20).
SLOW_PAGES = {"09-bonus-training-and-fine-tuning.md": 2700}
BLOCK_TIMEOUT_S = {"09-bonus-training-and-fine-tuning.md": 1800}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, marks=pytest.mark.timeout(SLOW_PAGES[p.name])) if p.name in SLOW_PAGES else p
        for p in MODULE_PAGES
    ],
    ids=lambda p: p.name,
)
def test_module_commands_run(page: Path, platform: dict[str, str], tmp_path: Path) -> None:
    """Every runnable block of the page exits 0, every HTTP call it makes succeeds (unless the block says
    `# expect HTTP ...`), and it prints its expected lines, against the running platform."""
    env = block_env(dict(os.environ), tmp_path / "curl")
    failures: list[str] = []  # failed calls, gathered so one run names every block that needs a fix
    pid_files = set((ROOT / ".llmops").glob("*.pid"))
    try:
        for block in runnable_blocks(page):
            result = _run_block(block.command, env, BLOCK_TIMEOUT_S.get(page.name, 600))
            detail = (
                f"{page.name} line {block.line} exited {result.returncode}:\n{block.command}\n{result.stderr[-2000:]}"
            )
            assert result.returncode == 0, detail
            failures += [f"line {block.line}: {call}" for call in failed_calls(block.command, result.stderr)]
            missing = missing_lines(block.expected, result.stdout)
            assert not missing, f"{page.name} line {block.line}: expected lines not printed: {missing}\n{result.stdout}"
    finally:
        # A page that starts a background process (module 9's canary deployment) saves its pid as .llmops/<x>.pid
        # and stops it in a later block; when a block in between failed, stop it here.
        for pid_file in set((ROOT / ".llmops").glob("*.pid")) - pid_files:
            with contextlib.suppress(ValueError, OSError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            pid_file.unlink(missing_ok=True)
    assert not failures, (
        f"{page.name}: calls that failed (mark a block that fails on purpose `# expect HTTP ...`)\n"
        + ("\n".join(failures))
    )


def _run_block(command: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`bash -c command` in its own process group: on timeout the whole group is killed (make's children too)."""
    proc = subprocess.Popen(
        ["bash", "-c", command], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


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
