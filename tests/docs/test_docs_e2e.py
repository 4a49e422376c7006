"""End to end: run every runnable ```bash block of the module pages against the platform `make up` started.

Blocks run in page order, each in its own `bash` from the repository root (blocks save what later blocks need
under .llmops/). A block passes when it exits 0 and prints no error envelope it did not expect — the pages show
some errors on purpose, so only a non-zero exit status fails here. Pages whose service is not up are skipped.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.docs.helpers import ROOT, platform_env, reachable
from tests.docs.test_docs import MODULE_PAGES, bash_blocks

pytestmark = pytest.mark.e2e

# Which services a page needs beyond the core (gateway, inference, registry, guardrails, MLflow).
NEEDS = {
    "03-rag.md": ("LLMOPS_RAG_URL", "http://127.0.0.1:8002"),
    "06-observability-and-feedback.md": ("LLMOPS_FEEDBACK_URL", "http://127.0.0.1:8004"),
    "09-bonus-training-and-fine-tuning.md": ("LLMOPS_FEEDBACK_URL", "http://127.0.0.1:8004"),
}


@pytest.mark.parametrize("page", MODULE_PAGES, ids=lambda p: p.name)
def test_module_commands_run(page: Path) -> None:
    """Every runnable block of the page exits 0 against the running platform."""
    env = platform_env()
    if not reachable(env.get("LLMOPS_GATEWAY_URL", "http://127.0.0.1:8000") + "/readyz"):
        pytest.skip("the platform is not running (make up)")
    if page.name in NEEDS:
        var, default = NEEDS[page.name]
        if not reachable(env.get(var, default) + "/readyz"):
            pytest.skip(f"{page.name} needs the service at {env.get(var, default)}")
    for i, (runnable, body) in enumerate(bash_blocks(page), start=1):
        if not runnable:
            continue
        result = subprocess.run(["bash", "-c", body], cwd=ROOT, capture_output=True, text=True, timeout=600)
        detail = f"{page.name} block {i} exited {result.returncode}:\n{body}\n{result.stderr[-2000:]}"
        assert result.returncode == 0, detail
