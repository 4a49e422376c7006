"""docs/extending.md works as written: each worked example (a new engine, detector, eval metric) runs with one new
file and one registry line and prints what the page says, and the page's tables list what is registered.
No platform needed: the examples run the services in-process."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from services.guardrails.detectors.loader import DETECTORS
from services.inference.engines.registry import ENGINES
from services.rag.eval_metrics import METRICS
from tests.docs.helpers import ROOT
from tests.docs.worked_examples import PAGE, examples, sections

EXAMPLES = {ex.heading: ex for ex in examples()}
_ROW = re.compile(r"^\| `([^`]+)` \| ([^|]*) \|", re.M)


def table(text: str) -> dict[str, str]:
    """First column (a `name`) -> second column, of every table row in the text."""
    return {name: second.strip() for name, second in _ROW.findall(text)}


def test_one_example_per_extension_point() -> None:
    """An engine, a detector and a metric, each a new file, a registry line and a checked run."""
    assert set(EXAMPLES) == {"An inference engine", "A guardrails detector", "An evaluation metric"}
    for ex in EXAMPLES.values():
        assert len(ex.files) == 1 and len(ex.registrations) == 1, ex.heading
        assert ex.runs and all(expected for _, expected in ex.runs), f"{ex.heading}: a run block without output"
        assert len(ex.registrations[0][2].strip().splitlines()) == 1, f"{ex.heading}: more than one registry line"


@pytest.mark.parametrize("heading", sorted(EXAMPLES))
def test_worked_example_runs(heading: str) -> None:
    """The example, applied in a fresh interpreter, prints the output written under its Try-it block."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.docs.worked_examples", heading],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "\n".join(out for _, out in EXAMPLES[heading].runs)
    assert result.stdout.strip() == expected.strip(), result.stderr[-2000:]


def test_engine_table_matches_the_registry() -> None:
    """The engines the page lists are the ones ENGINES registers."""
    assert set(table(sections(PAGE.read_text())["An inference engine"])) == set(ENGINES)


def test_detector_table_matches_the_registry() -> None:
    """Names, sections and settings classes of the page's detector table are DETECTORS'."""
    rows = _detector_rows(sections(PAGE.read_text())["A guardrails detector"])
    assert list(rows) == list(DETECTORS), "names, in run order"
    for name, spec in DETECTORS.items():
        sections_, settings = rows[name]
        want = ({"input", "content"} if "input" in spec.modes else set()) | ({"output"} & spec.modes)
        assert sections_ == want, name
        assert settings == spec.settings.__name__, name


def test_guardrails_readme_detector_table_matches_the_registry() -> None:
    """The guardrails README's detector table names every registered detector, with its modes."""
    readme = (ROOT / "services" / "guardrails" / "README.md").read_text()
    start = readme.index("| detector | modes |")
    rows = table(readme[start : readme.index("\n\n", start)])
    assert set(rows) == set(DETECTORS)
    modes = {"all": {"input", "output"}, "input, content": {"input"}, "output": {"output"}}
    for name, spec in DETECTORS.items():
        assert modes.get(rows[name]) == spec.modes, name


def test_metric_table_matches_the_registry() -> None:
    """The metrics the page lists, with their kind, are METRICS."""
    assert table(sections(PAGE.read_text())["An evaluation metric"]) == METRICS


def _detector_rows(text: str) -> dict[str, tuple[set[str], str]]:
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| `([^`]+)` \|", text, re.M)
    return {name: ({s.strip() for s in secs.split(",")}, cls) for name, secs, cls in rows}
