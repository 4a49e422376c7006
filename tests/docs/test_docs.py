"""Static checks of the course pages: every module has a page, commands parse, links resolve, and the error codes
the troubleshooting page explains exist in the code. No platform needed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.docs.helpers import ROOT

DOCS = ROOT / "docs"
MODULE_PAGES = sorted((DOCS / "modules").glob("[0-9][0-9]-*.md"))
COURSE_PAGES = [
    DOCS / "architecture.md",
    DOCS / "troubleshooting.md",
    DOCS / "swap-a-service.md",
    DOCS / "extending.md",
    DOCS / "learner-journey.md",
    *MODULE_PAGES,
]
_FENCE = re.compile(r"(?P<marker><!-- no-run -->\n)?```bash\n(?P<body>.*?)\n```", re.S)
_LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)(?:#[^)]*)?\)")


def bash_blocks(page: Path) -> list[tuple[bool, str]]:
    """(runnable, body) of every ```bash block; `<!-- no-run -->` on the line before marks it not runnable."""
    return [(m.group("marker") is None, m.group("body")) for m in _FENCE.finditer(page.read_text())]


def test_one_page_per_module() -> None:
    """Modules 1-8 and the bonus (9), each linking its exercise and its check command."""
    assert [p.name[:2] for p in MODULE_PAGES] == [f"{i:02d}" for i in range(1, 10)]
    for i, page in enumerate(MODULE_PAGES, start=1):
        text = page.read_text()
        n = "bonus" if i == 9 else str(i)
        assert f"make check-exercise N={n}" in text, page.name
        assert f"exercises/{i:02d}-" in text, page.name


@pytest.mark.parametrize("page", COURSE_PAGES, ids=lambda p: p.name)
def test_bash_blocks_parse(page: Path) -> None:
    """Every bash block is valid shell (`bash -n`); module pages load the env file before using $LLMOPS_*."""
    for runnable, body in bash_blocks(page):
        result = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
        assert result.returncode == 0, f"{page.name}: {result.stderr}\n{body}"
        if runnable and page.parent.name == "modules" and ("$LLMOPS_" in body or "${LLMOPS_" in body):
            assert ". .llmops/env" in body, f"{page.name}: a runnable block uses $LLMOPS_* without loading it:\n{body}"


@pytest.mark.parametrize("page", [*COURSE_PAGES, ROOT / "exercises" / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    """Links to files in the repository point at files that exist."""
    missing = [link for link in _LINK.findall(page.read_text()) if not (page.parent / link).exists()]
    assert not missing, f"{page.name}: {missing}"


def test_architecture_page() -> None:
    """A Mermaid diagram of the request path and of the data paths, a ports table, a glossary."""
    text = (DOCS / "architecture.md").read_text()
    assert text.count("```mermaid") >= 2
    for port in ("8000", "8001", "8002", "8003", "8004", "8005", "5000", "6379"):
        assert f"| {port} |" in text, port
    assert "## Glossary" in text


def test_architecture_page_lists_what_make_up_writes_to_its_env_file() -> None:
    """Every variable `make up` writes to .llmops/env is named on the architecture page, and every LLMOPS_ name the
    page gives there is one `make up` writes (the page listed 6 of them while `make up` wrote 9)."""
    spec = importlib.util.spec_from_file_location("platformctl_docs", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    ctl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ctl  # its dataclasses look their module up there
    spec.loader.exec_module(ctl)
    written = {line.split("=", 1)[0] for line in ctl.env_file_text("g", "k", defaultdict(str)).splitlines()}
    text = (DOCS / "architecture.md").read_text()
    paragraph = text[text.index("`.llmops/env`") :].split("\n\n", 1)[0]
    named = set(re.findall(r"`(LLMOPS_[A-Z_]+)`", paragraph))
    assert named == written, f"missing on the page: {sorted(written - named)}; not written: {sorted(named - written)}"


def test_troubleshooting_codes_exist_in_the_code() -> None:
    """Every error code named in a troubleshooting table is raised somewhere in services/ or libs/."""
    text = (DOCS / "troubleshooting.md").read_text()
    first_cells = [line.split("|")[1] for line in text.splitlines() if re.match(r"^\| (\d{3}|4xx)", line)]
    codes = {code for cell in first_cells for code in re.findall(r"`([a-z]+_[a-z_]+)`", cell)}
    assert len(codes) > 30, codes
    source = "\n".join(
        p.read_text(errors="replace")
        for d in ("services", "libs")
        for p in (ROOT / d).rglob("*.py")
        if "tests" not in p.parts
    )

    def raised(code: str) -> bool:
        # limit codes are built as f"{limit}_exceeded" from the limit's name (services/gateway/limits.py)
        return f'"{code}"' in source or (code.endswith("_exceeded") and f'"{code.removesuffix("_exceeded")}"' in source)

    missing = sorted(c for c in codes if not raised(c))
    assert not missing, f"codes explained in troubleshooting.md that the code never uses: {missing}"


_CURL = re.compile(r"\bcurl\s+(?P<args>(?:[^\n\\]|\\\n)*)")


@pytest.mark.parametrize("page", MODULE_PAGES, ids=lambda p: p.name)
def test_every_curl_says_when_it_fails(page: Path) -> None:
    """A learner sees a failed call too, not only the docs test: every curl of a runnable block shows errors (`-S`)
    and either fails on an HTTP error (`--fail-with-body`) or prints the status it checks (`-w '%{http_code}'`)."""
    loose = []
    for runnable, body in bash_blocks(page):
        for m in _CURL.finditer(body) if runnable else ():
            args = m.group("args")
            shows_errors = re.match(r"-s?S|-\w*S", args) is not None
            checked = "--fail-with-body" in args or "%{http_code}" in args
            if not (shows_errors and checked):
                loose.append(m.group(0).splitlines()[0])
    assert not loose, f"{page.name}: curl calls without -S and --fail-with-body (or a printed status): {loose}"
