"""The trace-event stream's cap fits in Redis's memory cap (found by the hour-long soak): an event takes about
2 KB in Redis, so the old cap of a million events (~2 GB) could never be reached inside the default 512 MB; Redis
(noeviction) would fill first and the gateway refuse every write with 507. The bytes per event are the soak's own
measurement (MEMORY USAGE of the stream over its length, bench/results/soak-2026-12-07-1h.json)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path

import yaml

from llmops_common.trace_events import EventEmitter
from services.gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "results" / "soak-2026-12-07-1h.json"
SHARE = 0.5  # of Redis's cap: keys, limits, reservations, batch files and the cache need the rest


def bytes_per_event() -> float:
    last = json.loads(SOAK.read_text())["samples"][-1]["redis"]["streams"]["llmops:events"]
    return float(last["bytes"]) / float(last["len"])


def default_caps() -> dict[str, int]:
    """Redis's default memory cap in bytes, as `make up`, compose and the Helm chart set it."""
    spec = importlib.util.spec_from_file_location("platformctl_events", ROOT / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    ctl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ctl
    spec.loader.exec_module(ctl)
    units = ctl._UNITS

    def size(text: str) -> int:
        number = text.rstrip("bkmgBKMG")
        return int(number) * units[text[len(number) :].lower()]

    compose = (ROOT / "deploy" / "compose" / "compose.yaml").read_text()
    compose_cap = compose.split("${REDIS_MAXMEMORY:-", 1)[1].split("}", 1)[0]
    helm = yaml.safe_load((ROOT / "deploy" / "k8s" / "llmops-platform" / "values.yaml").read_text())
    return {
        "make up": size(ctl.REDIS_MAXMEMORY_DEFAULT),
        "compose": size(compose_cap),
        "helm": size(str(helm["redis"]["maxmemory"])),
    }


def test_the_soak_measured_the_size_of_an_event() -> None:
    assert 500 < bytes_per_event() < 10_000


def test_the_default_stream_cap_fits_in_every_default_redis_cap() -> None:
    stream_bytes = {
        "gateway": GatewaySettings.model_fields["events_maxlen"].default * bytes_per_event(),
        "emitter default (rag)": inspect.signature(EventEmitter).parameters["maxlen"].default * bytes_per_event(),
    }
    for where, cap in default_caps().items():
        for who, size in stream_bytes.items():
            assert size <= SHARE * cap, f"{who}'s stream cap takes {size / 2**20:.0f} MiB of {where}'s Redis cap"
