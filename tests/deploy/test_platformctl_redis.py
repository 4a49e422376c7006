"""`make up` gives Redis a memory cap with policy noeviction (issue 12, row 10: Redis had no memory cap): on the
redis-server it starts, and with CONFIG SET on a Redis it finds already running (often shared, hence careful).
Checked against a private redis-server on a free port, never the shared one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import redis

from tests.support.fault_redis import private_redis

pytestmark = pytest.mark.integration  # needs a private redis-server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctl(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("platformctl_redis", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_the_cap_is_configurable_and_defaults_to_512mb(ctl: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPS_REDIS_MAXMEMORY", raising=False)
    assert ctl.redis_maxmemory() == ("512mb", 512 * 1024**2)
    monkeypatch.setenv("LLMOPS_REDIS_MAXMEMORY", "2gb")
    assert ctl.redis_maxmemory() == ("2gb", 2 * 1024**3)
    monkeypatch.setenv("LLMOPS_REDIS_MAXMEMORY", "0")
    assert ctl.redis_maxmemory()[1] == 0
    monkeypatch.setenv("LLMOPS_REDIS_MAXMEMORY", "lots")
    with pytest.raises(SystemExit):
        ctl.redis_maxmemory()


def test_a_started_redis_gets_the_cap_on_its_command_line(
    ctl: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spawned: list[list[str]] = []
    monkeypatch.setattr(ctl, "DATA", tmp_path)
    monkeypatch.setattr(ctl, "_spawn", lambda name, cmd, env: spawned.append(cmd) or 1)
    opened = iter([False, True])
    monkeypatch.setattr(ctl, "_port_open", lambda port: next(opened))
    monkeypatch.setenv("LLMOPS_REDIS_MAXMEMORY", "256mb")
    ctl.ensure_redis()
    cmd = spawned[0]
    assert cmd[cmd.index("--maxmemory") + 1] == str(256 * 1024**2)
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"


def test_a_running_redis_is_capped_with_config_set(ctl: ModuleType) -> None:
    with private_redis("--maxmemory-policy", "allkeys-lru") as (url, port):
        ctl.cap_shared_redis("64mb", 64 * 1024**2, port=port)
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert client.config_get("maxmemory")["maxmemory"] == str(64 * 1024**2)
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        finally:
            client.close()


def test_a_shared_redis_keeps_a_lower_cap_and_is_never_capped_below_what_it_holds(ctl: ModuleType) -> None:
    with private_redis("--maxmemory", "32mb") as (url, port):
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            ctl.cap_shared_redis("64mb", 64 * 1024**2, port=port)
            assert client.config_get("maxmemory")["maxmemory"] == str(32 * 1024**2)  # the operator's lower cap
            client.config_set("maxmemory", 0)
            ctl.cap_shared_redis("1kb", 1024, port=port)  # it holds more than 1 KB already: every write would fail
            assert client.config_get("maxmemory")["maxmemory"] == "0"
        finally:
            client.close()


def test_compose_and_helm_cap_redis_with_noeviction() -> None:
    """Read as text (the compose and Helm renderers are checked in test_compose*/test_helm*, when installed)."""
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory") + 1] == "${REDIS_MAXMEMORY:-512mb}"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    chart = ROOT / "deploy" / "k8s" / "llmops-platform"
    template = (chart / "templates" / "redis.yaml").read_text()
    assert '"--maxmemory", {{ .Values.redis.maxmemory | quote }}, "--maxmemory-policy", "noeviction"' in template
    assert yaml.safe_load((chart / "values.yaml").read_text())["redis"]["maxmemory"] == "512mb"
