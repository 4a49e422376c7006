"""The error catalogue (libs/llmops_common/error_codes/) against the code and the docs: every code the services
raise is catalogued with the status they raise it with, every catalogued code is raised somewhere, and
docs/troubleshooting.md's code tables are the ones the catalogue generates. Reads source only; no servers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from llmops_common.error_codes import CATALOGUE, SECTIONS, ErrorCode, api_error
from llmops_common.errors import APIError

ROOT = Path(__file__).resolve().parents[2]

# Codes the scan cannot see where they are raised, each with the reason; they must still be string literals in the
# source. Keep this short: prefer raising a code in a shape the scan reads (scripts/scan_error_codes.py says which).
FOUND_ONLY_AS_LITERAL = {
    "invalid_line": "services/rag/routes.py hands it to the ingest job inside `RawDocument(invalid=(code, message))`",
}


def _script(name: str) -> ModuleType:
    """A module of scripts/ (not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"errcat_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


scan_error_codes = _script("scan_error_codes")
gen_troubleshooting = _script("gen_troubleshooting")


@pytest.fixture(scope="module")
def sites() -> list[Any]:
    """Every error-code site of services/ and libs/."""
    found = scan_error_codes.scan()
    assert len(found) > 150, "the scan found almost nothing: did the raise sites change shape?"
    return found


def test_every_code_the_services_raise_is_catalogued(sites: list[Any]) -> None:
    """A new code cannot ship undocumented: add it to libs/llmops_common/error_codes/<service>.py first."""
    missing = sorted({f"{s.code} ({s.path}:{s.line})" for s in sites if not s.pattern and s.code not in CATALOGUE})
    assert not missing, f"codes raised but not in the error catalogue: {missing}"
    unmatched = sorted(
        f"{s.code} ({s.path}:{s.line})" for s in sites if s.pattern and not any(s.matches(c) for c in CATALOGUE)
    )
    assert not unmatched, f"f-string codes that match no catalogued code: {unmatched}"


def test_raised_statuses_are_the_catalogued_ones(sites: list[Any]) -> None:
    """Where a literal status stands next to a literal code, the catalogue lists that status for it."""
    wrong = sorted(
        f"{s.code} raised with {status} at {s.path}:{s.line}, catalogued with {CATALOGUE[s.code].statuses}"
        for s in sites
        if not s.pattern and s.code in CATALOGUE
        for status in s.statuses
        if status not in CATALOGUE[s.code].statuses
    )
    assert not wrong, wrong


def test_every_catalogued_code_is_raised(sites: list[Any]) -> None:
    """No stale entries: each code is raised literally, or by an f-string whose parts are literals in the source
    (`f"{exc.limit}_exceeded"` with `"key_rpm"` in services/gateway/limits.py), or is listed above with why."""
    literal = {s.code for s in sites if not s.pattern}
    strings = scan_error_codes.string_literals()

    def raised(code: str) -> bool:
        if code in literal:
            return True
        if code in FOUND_ONLY_AS_LITERAL:
            return code in strings
        return any(s.matches(code) and all(h in strings for h in s.holes(code)) for s in sites if s.pattern)

    stale = sorted(code for code in CATALOGUE if not raised(code))
    assert not stale, f"catalogued codes that nothing raises (remove them, or raise them): {stale}"


def test_troubleshooting_page_is_generated_from_the_catalogue() -> None:
    """Run `python scripts/gen_troubleshooting.py` after changing the catalogue; this fails until then."""
    for path, complete in gen_troubleshooting.PAGES.items():
        text = path.read_text()
        assert gen_troubleshooting.render(text, complete, path.name) == text, (
            f"{path} is out of date: run the generator"
        )
    page = gen_troubleshooting.PAGE.read_text()
    for code in CATALOGUE:
        assert f"`{code}` |" in page, code


@pytest.mark.parametrize("entry", list(CATALOGUE.values()), ids=lambda e: e.code)
def test_each_entry_is_complete(entry: ErrorCode) -> None:
    """A snake_case code, a real HTTP error status, one-line meaning and fix, a message whose placeholders parse."""
    assert entry.code.replace("_", "").isalpha() and entry.code == entry.code.lower(), entry.code
    assert all(400 <= s <= 599 for s in entry.statuses), entry.statuses
    assert entry.meaning and entry.fix and "\n" not in entry.meaning + entry.fix + entry.message
    assert all(name.isidentifier() for name in entry.placeholders), entry.placeholders  # parsing raises on a lone brace


def test_sections_list_each_code_once() -> None:
    """Every code in exactly one generated table (the catalogue refuses duplicates when it is built)."""
    codes = [e.code for section in SECTIONS.values() for e in section]
    assert len(codes) == len(set(codes)) == len(CATALOGUE)


def test_api_error_builds_the_catalogued_error() -> None:
    """New raise sites can take status and message from the catalogue; a status it does not list is refused."""
    err = api_error("team_not_found", team="research")
    assert isinstance(err, APIError)
    assert (err.status, err.code) == (404, "team_not_found")
    assert err.message == "team 'research' does not exist; create it first with POST /admin/teams"
    assert api_error("no_deployment_available", 503, model="m", attempts="a").status == 503
    with pytest.raises(ValueError, match="pass the one"):
        api_error("no_deployment_available", model="m", attempts="a")
    with pytest.raises(ValueError, match="not 500"):
        api_error("team_not_found", 500, team="x")
    with pytest.raises(KeyError):
        api_error("no_such_code")


_SHAPES = """
from dataclasses import dataclass


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, *, param: str | None = None) -> None:
        self.code = code


def error_body(status: int, code: str, message: str) -> dict:
    return {}


TABLE = {"X": (409, "from_table")}
UNAVAILABLE = "from_constant"


class ShapeError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.code = code


class SubError(ShapeError):
    pass


@dataclass(frozen=True)
class Refusal:
    reason: str
    code: str


def bad(param: str, message: str, code: str = "from_default") -> APIError:
    return APIError(400, code, message)


def raises(limit: str, flag: bool, job) -> None:
    APIError(404, "positional", "m")
    SubError(403, "from_subclass", "m")
    Refusal("m", "from_dataclass")
    bad("p", "m", code="from_keyword")
    APIError(503, UNAVAILABLE, "m")
    code = "if_true" if flag else "if_false"
    status, code = 502, "from_tuple"
    status, code = TABLE.get("k", (500, "table_default"))
    job.error_code = "from_attribute"
    body = {"code": "from_dict", "message": "m"}
    code = str(body.get("code") or "from_fallback")
    APIError(429, f"{limit}_exceeded", "m")
    error_body(400, "via_error_body", "m")
    note = "not_a_code"  # a plain string in a plain variable is not a code
"""


def test_the_scan_reads_every_shape_it_promises(tmp_path: Path) -> None:
    """Each shape scripts/scan_error_codes.py documents is found (with its status where one stands next to it)."""
    (tmp_path / "services" / "demo").mkdir(parents=True)
    (tmp_path / "services" / "demo" / "shapes.py").write_text(_SHAPES)
    found = {(s.code, s.statuses) for s in scan_error_codes.scan(tmp_path)}
    assert found >= {
        ("positional", (404,)),
        ("from_subclass", (403,)),
        ("from_dataclass", ()),
        ("from_default", ()),
        ("from_keyword", ()),
        ("from_constant", (503,)),
        ("if_true", ()),
        ("if_false", ()),
        ("from_tuple", (502,)),
        ("from_table", (409,)),
        ("table_default", (500,)),
        ("from_attribute", ()),
        ("from_dict", ()),
        ("from_fallback", ()),
        (r"([a-z0-9_]+)_exceeded", (429,)),
        ("via_error_body", (400,)),
    }, found
    assert not any(code in ("not_a_code", "code", "m", "k", "X", "p") for code, _ in found), found
