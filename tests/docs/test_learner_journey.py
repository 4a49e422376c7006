"""The learner's journey, tested: docs/learner-journey.md run top to bottom against the platform `make up` starts.

The commands are the page's own: the test extracts every runnable ```bash block from the Markdown (there is no
second copy here to drift) and runs each in its own `bash` from the repository root, as a learner pastes them.
A block passes when it exits 0 and its stdout has the lines of the page's expected-output block under it:

    ```bash                       <- runnable unless the line before is <!-- no-run -->
    curl -s ... ; echo
    ```
    <!-- expected -->
    ```text
    {"error":{…"code":"guardrail_blocked",…}   <- `…`: one or more characters; spaces: any whitespace;
    ```                                            lines match whole output lines, in this order

(tests/docs/runbook.py has the parser and the matcher.) On top of the printed lines, the journey's effects are
checked here from outside, with the test's own HTTP calls and file reads: the chat's request id is in the feedback
store with the rating left for it, its trace id has spans of the gateway, guardrails and inference in
.llmops/traces.jsonl, and the prompt's production alias points at the version a reviewer approved.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.docs.helpers import ROOT
from tests.docs.runbook import Block, block_env, failed_calls, missing_lines, runnable_blocks

JOURNEY = ROOT / "docs" / "learner-journey.md"
# What the journey must walk through, in this order (the page's numbered sections).
STEPS = [
    "Create your team and your key",
    "Chat",
    "Stream",
    "Ingest a document",
    "Ask a cited question",
    "Hit a rate limit",
    "Trigger a guardrail block",
    "Leave feedback",
    "Find the request in the feedback store, and its trace",
    "Promote a prompt version through approval",
]


def _get(url: str, token: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return dict(json.loads(response.read()))


def _section(output: dict[str, str], number: int) -> str:
    """The stdout of every block of section `number` (1-based), joined."""
    return output[f"{number}. {STEPS[number - 1]}"]


def test_journey_walks_every_step_in_order() -> None:
    """One numbered section per step, in learner order; every runnable block says what it prints."""
    blocks = runnable_blocks(JOURNEY)
    sections = list(dict.fromkeys(block.section for block in blocks))
    assert sections == [f"{i}. {title}" for i, title in enumerate(STEPS, start=1)]
    assert all(block.expected for block in blocks), [b.line for b in blocks if not b.expected]


def _run(block: Block, curl_home: Path) -> str:
    env = block_env(dict(os.environ), curl_home)
    result = subprocess.run(
        ["bash", "-c", block.command], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env
    )
    where = f"docs/learner-journey.md line {block.line} ({block.section})"
    shown = f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"{where} exited {result.returncode}\n{shown}"
    failed = failed_calls(block.command, result.stderr)
    assert not failed, f"{where}: {failed}\n{shown}"
    missing = missing_lines(block.expected, result.stdout)
    assert not missing, f"{where}: expected lines not printed: {missing}\n{shown}"
    return result.stdout


@pytest.mark.e2e
@pytest.mark.timeout(900)  # includes starting the platform when this is the first test to need it
def test_learner_journey(platform: dict[str, str], tmp_path: Path) -> None:
    """Every block of the journey prints what the page says, and each step's effect is really there."""
    output: dict[str, str] = {}
    for block in runnable_blocks(JOURNEY):
        output[block.section] = output.get(block.section, "") + _run(block, tmp_path / "curl")

    key = (ROOT / ".llmops" / "journey" / "key").read_text().strip()
    assert _get(platform["LLMOPS_GATEWAY_URL"] + "/v1/me", key)["team"] == "journey"

    # the chat's request id -> the feedback store has it, with the feedback of step 8 and a trace id
    request_id = re.search(r"^x-request-id: (req_\w+)", _section(output, 2), re.M | re.I)
    assert request_id, _section(output, 2)
    stored = _get(f"{platform['LLMOPS_FEEDBACK_URL']}/v1/requests/{request_id.group(1)}", key)
    assert stored["team"] == "journey" and stored["status"] == 200
    assert [f["rating"] for f in stored["feedback"]] == [1]
    assert f"trace {stored['trace_id']}" in _section(output, 9)

    # the trace id -> spans of every service the chat went through, in the file `make up` points them at
    spans = [json.loads(line) for line in (ROOT / ".llmops" / "traces.jsonl").read_text().splitlines() if line]
    services = {span["service"] for span in spans if span["trace_id"] == stored["trace_id"]}
    assert {"llmops-gateway", "llmops-guardrails", "llmops-inference"} <= services, services

    # the promotion -> the alias moved to the requested version only once the reviewer approved
    moved = re.search(r"^production is version (\S+); \S+ asks for version (\d+)$", _section(output, 10), re.M)
    still = re.search(r"^production is still version (\S+)$", _section(output, 10), re.M)
    assert moved and still, _section(output, 10)
    before, wanted = moved.groups()
    assert still.group(1) == before != wanted
    alias = _get(f"{platform['LLMOPS_REGISTRY_URL']}/v1/prompts/journey-support/aliases/production")
    assert alias["version"] == wanted and "production" in alias["aliases"]


def test_expected_lines_are_checked() -> None:
    """The matcher fails outputs that lack a line, have it out of order, or differ outside a `…`."""
    expected = ['{"error":{…"code":"key_rpm_exceeded",…}}', "request …: 429"]
    good = 'request 1: 200\n{"error":{"message":"x","code":"key_rpm_exceeded","request_id":"r"}}\nrequest 3: 429\n'
    assert missing_lines(expected, good) == []
    assert missing_lines(expected, good.replace("key_rpm_exceeded", "team_rpm_exceeded")) == [expected[0]]
    assert missing_lines(expected, "request 3: 429\n" + good.splitlines()[1]) == [expected[1]]
    assert missing_lines(["answer: …"], "answer: \n") == ["answer: …"]  # `…` is at least one character
    assert missing_lines(["a b"], "a    b\r\n") == []


def test_expected_block_needs_a_runnable_block(tmp_path: Path) -> None:
    """An expected block under a no-run block (or none) is a mistake in the page, said so with its line."""
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- no-run -->\n```bash\nmake up\n```\n\n<!-- expected -->\n```text\nok\n```\n")
    with pytest.raises(ValueError, match=r"page\.md:9"):
        runnable_blocks(page)


def test_failed_http_calls_are_reported(tmp_path: Path) -> None:
    """A block's curl that answers >= 400 (or never connects) fails the page unless the block expects it."""
    env = block_env({"PATH": os.environ["PATH"]}, tmp_path / "curl")
    command = "curl -s -o /dev/null http://127.0.0.1:1/v1/models || true"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, env=env)
    assert failed_calls(command, result.stderr) == ["HTTP 000 from http://127.0.0.1:1/v1/models"]
    stderr = "llmops-doc-http 429 http://x/v1/chat\nllmops-doc-http 200 http://x/v1/models\n"
    assert failed_calls("curl http://x/v1/chat", stderr) == ["HTTP 429 from http://x/v1/chat"]
    assert failed_calls("# expect HTTP 429\ncurl http://x/v1/chat", stderr) == []
    assert failed_calls("# expect HTTP 4xx\ncurl http://x/v1/chat", stderr) == []
    assert failed_calls("# expect HTTP 404\ncurl http://x/v1/chat", stderr) == ["HTTP 429 from http://x/v1/chat"]
    assert failed_calls("# expect HTTP 403, 429\ncurl http://x/v1/chat", stderr) == []
