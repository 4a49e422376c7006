"""Runnable Markdown: the ```bash blocks of a page, each with the output the page says it prints.

The convention (used by docs/learner-journey.md, open to every page):

- A ```bash block is runnable unless the line before it is `<!-- no-run -->`.
- A ```text block whose line before is `<!-- expected -->` is the expected output of the nearest runnable bash
  block above it. Each of its non-empty lines must match a whole line of that block's stdout, in the order given
  (lines in between are allowed). In an expected line `…` stands for one or more characters of any kind and a run
  of spaces for any run of whitespace; everything else is literal. So the page shows the learner exactly the
  lines that matter, and the test checks exactly those lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(
    r"(?:<!-- (?P<marker>no-run|expected) -->\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)\n```$", re.S | re.M
)
_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
_ANY_FENCE = re.compile(r"^```.*?^```$", re.S | re.M)
WILDCARD = "…"


@dataclass
class Block:
    """One runnable bash block: its command, the lines it must print, and where it is on the page."""

    command: str
    expected: list[str]
    section: str
    line: int


def runnable_blocks(page: Path) -> list[Block]:
    """The runnable bash blocks of `page` in page order, with their expected lines (empty when none are given)."""
    text = page.read_text()
    fences = [(m.start(), m.end()) for m in _ANY_FENCE.finditer(text)]
    headings = [  # a `# comment` inside a code block is not a heading
        (m.start(), m.group(1).strip())
        for m in _HEADING.finditer(text)
        if not any(start < m.start() < end for start, end in fences)
    ]
    blocks: list[Block] = []
    runnable_above = False  # whether the nearest bash block above is runnable (an expected block needs one)
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body"))
        if m.group("lang") == "bash":
            runnable_above = m.group("marker") != "no-run"
            if runnable_above:
                section = next((title for start, title in reversed(headings) if start < m.start()), "")
                blocks.append(Block(m.group("body"), [], section, line))
        elif m.group("marker") == "expected":
            if not runnable_above or blocks[-1].expected:
                raise ValueError(f"{page.name}:{line}: an expected block must follow a runnable bash block")
            blocks[-1].expected = [e.strip() for e in m.group("body").splitlines() if e.strip()]
    return blocks


def line_pattern(expected: str) -> re.Pattern[str]:
    """The regular expression of one expected line (`…` = one or more characters, spaces = any whitespace)."""
    parts = re.split(rf"({WILDCARD}|\s+)", expected.strip())
    regex = "".join(
        ".+?" if part == WILDCARD else r"\s+" if part.isspace() else re.escape(part) for part in parts if part
    )
    return re.compile(regex)


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines that the output lacks, matched in order (an empty list: the output is as expected)."""
    lines = [line.rstrip() for line in output.replace("\r", "").splitlines()]
    missing: list[str] = []
    position = 0
    for wanted in expected:
        pattern = line_pattern(wanted)
        found = next((i for i in range(position, len(lines)) if pattern.fullmatch(lines[i])), None)
        if found is None:
            missing.append(wanted)
        else:
            position = found + 1
    return missing


# Every curl a block runs reports its HTTP status on stderr (through a curlrc the runner provides), so a page
# whose call fails is a failing page even where `curl -s` hides it and the block still exits 0. A block that
# shows an error on purpose says so in a comment the learner reads too: `# expect HTTP 429` (or 4xx, or a list:
# `# expect HTTP 403, 422`).
_CURLRC = 'write-out = "%{stderr}llmops-doc-http %{http_code} %{url_effective}\\n"\n'
_STATUS = re.compile(r"^llmops-doc-http (\d{3}) (\S+)$", re.M)
_EXPECTED_STATUS = re.compile(r"#\s*expect HTTP ([\dx]{3}(?:\s*(?:,|and|then)\s*[\dx]{3})*)", re.I)


def block_env(base: dict[str, str], curl_home: Path) -> dict[str, str]:
    """`base` plus a CURL_HOME whose .curlrc makes every curl report its status."""
    curl_home.mkdir(parents=True, exist_ok=True)
    (curl_home / ".curlrc").write_text(_CURLRC)
    return {**base, "CURL_HOME": str(curl_home)}


def failed_calls(command: str, stderr: str) -> list[str]:
    """The calls of a block that answered >= 400 (or never answered: 000), less those the block expects."""
    listed = [code for found in _EXPECTED_STATUS.findall(command) for code in re.findall(r"[\dx]{3}", found.lower())]
    allowed = [code.replace("x", r"\d") for code in listed]
    failed = []
    for status, url in _STATUS.findall(stderr):
        if (status == "000" or int(status) >= 400) and not any(re.fullmatch(a, status) for a in allowed):
            failed.append(f"HTTP {status} from {url}")
    return failed
