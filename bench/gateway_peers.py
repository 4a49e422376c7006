"""The peers of the gateway bench, in a throw-away venv of their own: LiteLLM's proxy (pinned) and py-spy.

They are never installed into the project's venv (their dependency pins would fight ours). The venv lives under
.llmops/peers-venv (LLMOPS_PEERS_VENV overrides it) and is created on first use from PyPI by the ordinary pip
client; when the index cannot be reached the bench says so and runs without the peer.
Run `python bench/gateway_peers.py` to install ahead of a bench.

LITELLM_VERSION: 1.106.12 is the newest release whose `litellm[proxy]` resolves from PyPI alone (1.108.x pins
litellm-proxy-extras / litellm-enterprise builds that were never published there, and 1.110 moved the proxy into a
package PyPI does not carry). 1.107.0 was the compromised release and must never be pinned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root for tests.support
from tests.support.servers import server_process, wait_ready

REPO = Path(__file__).resolve().parents[1]
LITELLM_VERSION = "1.106.12"
PY_SPY_VERSION = "0.4.3"
MASTER_KEY = "sk-bench-litellm"


def venv() -> Path:
    """Where the peers' venv lives."""
    return Path(os.environ.get("LLMOPS_PEERS_VENV", REPO / ".llmops" / "peers-venv"))


def installed_version(package: str) -> str | None:
    """The version of `package` in the peers' venv, or None."""
    python = venv() / "bin" / "python"
    if not python.exists():
        return None
    code = f"from importlib.metadata import version; print(version({package!r}))"
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return run.stdout.strip() if run.returncode == 0 else None


def ensure(timeout_s: float = 900) -> str | None:
    """Create the venv and install the pinned peers; None when ready, else why not (the bench prints it)."""
    if installed_version("litellm") == LITELLM_VERSION and (venv() / "bin" / "py-spy").exists():
        return None
    try:
        if not (venv() / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv())], check=True, timeout=120)
        # PyPI through the ordinary client; a site-wide pip configuration (local wheel folders, caps) is not ours.
        env = {**os.environ, "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}
        cmd = [str(venv() / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        cmd += [f"litellm[proxy]=={LITELLM_VERSION}", f"py-spy=={PY_SPY_VERSION}"]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create the peers' venv at {venv()}: {exc}"
    if run.returncode != 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-2:]
        return f"pip could not install litellm[proxy]=={LITELLM_VERSION} (index unreachable?): {' '.join(tail)}"
    return None


def tool(name: str) -> str | None:
    """A command from PATH, else from the peers' venv."""
    found = shutil.which(name)
    if found:
        return found
    candidate = venv() / "bin" / name
    return str(candidate) if candidate.exists() else None


@contextlib.contextmanager
def litellm_proxy(
    upstream_port: int, port: int, folder: Path, workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """LiteLLM's proxy in front of the same fake upstream, model `bench-model`, master key auth (no database:
    LiteLLM's virtual keys need PostgreSQL, so its cheapest auth path is measured). Yields its base URL."""
    config = {
        "model_list": [
            {
                "model_name": "bench-model",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": f"http://127.0.0.1:{upstream_port}/v1",
                    "api_key": "fake",
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True, "set_verbose": False},
    }
    path = folder / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start (no network here)
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    env.pop("DATABASE_URL", None)
    cmd = [str(venv() / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", str(workers)]
    log_path = folder / "litellm.log"
    with server_process(cmd, log_path, env=env, cwd=folder) as proc:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base + "/health/liveliness", timeout_s=180, proc=proc)
        except RuntimeError as exc:  # it exited: say why, from its own log
            raise RuntimeError(f"LiteLLM's proxy: {exc}: {log_path.read_text(errors='replace')[-600:]}") from None
        yield base, proc


if __name__ == "__main__":
    problem = ensure()
    print(problem or f"peers ready in {venv()}: litellm {installed_version('litellm')}, py-spy {PY_SPY_VERSION}")
    sys.exit(1 if problem else 0)
