"""The worked example of docs/swap-a-service.md as compose runs it: the override swaps guardrails for
examples/minimal_guardrails, and the example's image holds what it imports (no platform code)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.conftest import COMPOSE_DIR, ROOT, compose_cmd, container_port, dockerfile_instructions, run, tool

OVERRIDE = COMPOSE_DIR / "compose.swap-guardrails.yaml"
DOCKERFILE = ROOT / "examples" / "minimal_guardrails" / "Dockerfile"
PROBE = """
import importlib, sys
module_name, factory = {app!r}.split(":")
app = getattr(importlib.import_module(module_name), factory)()
outside = [m.__name__ for m in list(sys.modules.values())
           if (getattr(m, "__file__", None) or "").startswith({root!r}) and not m.__file__.startswith({venv!r})]
assert not outside, f"imported from outside the image: {{outside}}"
print("ok", type(app).__name__)
"""


def _cmd() -> list[str]:
    cmds = [args for name, args in dockerfile_instructions(DOCKERFILE) if name == "CMD"]
    return list(json.loads(cmds[-1]))


def test_override_swaps_only_guardrails(compose_config: dict) -> None:
    """Guardrails is built from the example; every other service (the gateway and its URLs too) is unchanged."""
    merged = json.loads(run(compose_cmd("config", "--format", "json", override=OVERRIDE)).stdout)
    guard = merged["services"]["guardrails"]
    assert guard["build"]["dockerfile"] == "examples/minimal_guardrails/Dockerfile"
    assert Path(guard["build"]["context"]) == ROOT
    assert guard["image"] != compose_config["services"]["guardrails"]["image"]
    assert guard["expose"] == compose_config["services"]["guardrails"]["expose"]
    assert not guard.get("ports"), "the replacement is as internal as the original"
    assert "http://127.0.0.1:8005/readyz" in " ".join(guard["healthcheck"]["test"])
    for name, service in compose_config["services"].items():
        if name != "guardrails":
            assert merged["services"][name] == service, f"the override changed {name}"
    assert merged["services"]["gateway"]["environment"]["GATEWAY_GUARDRAILS_URL"] == "http://guardrails:8005"


def test_example_image_serves_what_compose_probes(compose_config: dict) -> None:
    """The image's CMD listens on the container port compose exposes and probes; hadolint finds nothing."""
    cmd = _cmd()
    port = container_port(compose_config["services"]["guardrails"])
    assert cmd[:2] == ["uvicorn", "examples.minimal_guardrails.app:create_app"] and "--factory" in cmd
    assert cmd[cmd.index("--port") + 1] == str(port)
    run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])


def test_example_image_holds_what_it_imports(tmp_path: Path) -> None:
    """Rebuild the image's /app from its COPY lines: the app imports and starts with those files only."""
    app_dir = tmp_path / "app"
    copies = [args.split()[-2:] for name, args in dockerfile_instructions(DOCKERFILE) if name == "COPY"]
    for src, target in copies:
        if not target.startswith("/app/"):
            continue
        out = app_dir / target.removeprefix("/app/")
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, out, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / src, out)
    venv = str(Path(sys.executable).parent.parent)
    code = PROBE.format(app=_cmd()[1], root=str(ROOT), venv=venv)
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PYTHONPATH": str(app_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    env["GUARDRAILS_SERVICE_TOKEN"] = "probe-token"  # compose passes one; the example refuses to start without
    proc = subprocess.run([sys.executable, "-c", code], cwd=app_dir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok Starlette")
