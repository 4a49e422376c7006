"""Without a Docker engine, rebuild each image's /app from its Dockerfile's COPY lines and import the app there.

This proves the image holds everything its service imports (its own folder and llmops_common, nothing
from other services or the repository root) and that the factory named in CMD exists.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES, dockerfile_instructions

PROBE = """
import importlib, os, sys
root, venv = {root!r}, {venv!r}
module = importlib.import_module("services.{name}.app")
assert callable(getattr(module, "create_app")), "no create_app factory"
for mod in list(sys.modules.values()):
    path = getattr(mod, "__file__", None) or ""
    if path.startswith(root) and not path.startswith(venv):
        raise SystemExit(f"imported from outside the image: {{mod.__name__}} ({{path}})")
print("ok", module.__file__)
"""


def dockerignore_patterns() -> list[str]:
    """Patterns of .dockerignore (comments and blanks dropped)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's matching, closely enough for these patterns: `**/x` anywhere, `a/*/b` per segment."""
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, bare) for part in parts):
            return True
    return False


def build_app_dir(service: str, dest: Path) -> Path:
    """Copy what the final stage COPYs from the context (minus .dockerignore) into dest/app."""
    patterns = dockerignore_patterns()
    app = dest / "app"
    final = dockerfile_instructions(ROOT / "services" / service / "Dockerfile")
    for name, args in final:
        if name != "COPY" or args.startswith("--from"):
            continue
        src, target = args.split()[-2:]
        if not target.startswith("/app/"):
            continue
        for path in sorted((ROOT / src).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and not ignored(rel, patterns):
                out = app / target.removeprefix("/app/") / path.relative_to(ROOT / src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
    return app


def test_dockerignore_keeps_tests_and_state_out() -> None:
    """The build context drops tests, local state, the venv and git."""
    patterns = dockerignore_patterns()
    for rel in (".venv/bin/python", ".git/HEAD", ".llmops/data/x.db", "services/gateway/tests/test_x.py"):
        assert ignored(rel, patterns), rel
    assert not ignored("services/gateway/app.py", patterns)
    assert not ignored("libs/llmops_common/app.py", patterns)


def test_each_image_layout_imports_its_app(tmp_path: Path) -> None:
    """`import services.<name>.app` works with only the files the image copies (all services in parallel)."""
    venv = str(Path(sys.executable).parent.parent)

    def probe(service: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        app = build_app_dir(service, tmp_path / service)
        if not (app / "services" / service / "app.py").exists():
            pytest.skip(f"services/{service}/app.py does not exist yet")
        code = PROBE.format(root=str(ROOT), venv=venv, name=service)
        env = {
            "PATH": f"{venv}/bin:/usr/bin:/bin",
            "PYTHONPATH": f"{app}:{app}/libs",
            "HF_HUB_OFFLINE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(tmp_path),
        }
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=app, env=env, capture_output=True, text=True, timeout=180
        )
        return service, proc

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(probe, SERVICES))
    failures = [f"{s}: {p.stdout}{p.stderr[-2000:]}" for s, p in results if p.returncode != 0]
    assert not failures, "\n".join(failures)
