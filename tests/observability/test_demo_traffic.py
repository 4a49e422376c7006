"""scripts/demo_traffic.py: configuration from .llmops/env, and it refuses to send traffic off this machine."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_traffic.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_traffic", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_traffic"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_env_file_is_read_and_loopback_urls_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = _module()
    env = tmp_path / "env"
    env.write_text("# written by make up\nLLMOPS_GATEWAY_URL=http://127.0.0.1:8000/\nLLMOPS_API_KEY='sk-llmops-x'\n")
    for name in ("LLMOPS_GATEWAY_URL", "LLMOPS_API_KEY", "LLMOPS_ADMIN_KEY", "LLMOPS_FEEDBACK_URL", "LLMOPS_RAG_URL"):
        monkeypatch.delenv(name, raising=False)
    args = demo.argparse.Namespace(env_file=str(env), feedback_url=None, rag_url="http://localhost:9002", model=None)
    config = demo.load_config(args)
    assert config.gateway == "http://127.0.0.1:8000" and config.api_key == "sk-llmops-x"
    assert config.admin_key is None and config.rag == "http://localhost:9002"
    assert config.feedback == "http://127.0.0.1:8004" and config.model == "smollm2-135m-instruct"


@pytest.mark.parametrize("url", ["http://example.com:8000", "http://10.0.0.5:8000", "http://192.168.1.2"])
def test_non_loopback_urls_are_refused(url: str) -> None:
    with pytest.raises(SystemExit, match="not on this machine"):
        _module().require_loopback(url)


def test_bad_arguments_and_missing_key_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = _module()
    monkeypatch.delenv("LLMOPS_API_KEY", raising=False)
    with pytest.raises(SystemExit):
        demo.main(["--duration", "0"])
    with pytest.raises(SystemExit, match="make up"):
        demo.main(["--env-file", str(tmp_path / "missing"), "--duration", "1"])
