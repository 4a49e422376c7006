"""The soak's recorder and slope computation (bench/soak.py), run for a few seconds against a real gateway process
(FAKE upstream, private Redis prefix) with the demo traffic mix; `make soak` runs the same code for an hour."""

from __future__ import annotations

import math
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from bench import soak
from tests.reliability.conftest import FAKE_MODEL, PRICE
from tests.support.fake_upstream import FakeUpstream
from tests.support.fixtures import ADMIN, REDIS_URL, closed_port_url
from tests.support.servers import REPO, free_port, server_process, wait_ready

pytestmark = pytest.mark.integration


def sample(t: float, rss_mib: float, keys: int, p99: float = 10.0) -> dict[str, Any]:
    """A synthetic sample shaped like Recorder.sample()'s."""
    return {
        "t_s": t,
        "loadavg": [0.0, 0.0, 0.0],
        "services": {"gateway": {"rss_bytes": int(rss_mib * soak.MIB), "fds": 20, "processes": 1}},
        "redis": {"used_memory": 2 * soak.MIB, "keys": keys, "families": {}, "streams": {}},
        "latency": {"chat": {"count": 5, "outcomes": {"200": 5}, "p50_ms": 5.0, "p95_ms": p99, "p99_ms": p99}},
    }


def test_the_slope_is_the_least_squares_line() -> None:
    assert soak.fit_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert soak.fit_slope([0, 1, 2], [5, 4, 6]) == pytest.approx(0.5)
    assert soak.fit_slope([7], [1]) == 0.0  # one point: no line


def test_growth_after_warm_up_is_flagged_and_a_flat_series_is_not() -> None:
    # RSS climbs 20 MiB per 5 minutes after a warm-up jump; the key count only wobbles.
    samples = [sample(0, 100, 40)] + [sample(300 * i, 200 + 20 * i, 400 + (i % 2)) for i in range(1, 13)]
    result = soak.analyse(samples, warmup_s=600)
    rss = result["gateway.rss_bytes"]
    assert rss["n"] == 11  # 600 s .. 3600 s
    assert rss["slope_per_hour"] == pytest.approx(240 * soak.MIB)
    assert rss["flat"] is False
    assert result["redis.keys"]["flat"] is True  # the warm-up's jump from 40 to 400 is left out
    assert result["gateway.fds"]["flat"] is True
    assert "flat" not in result["latency.chat.p99_ms"]  # reported, not judged
    falling = [sample(300 * i, 300 - 20 * i, 400) for i in range(1, 13)]  # pages reclaimed: no leak
    assert soak.analyse(falling, warmup_s=600)["gateway.rss_bytes"]["flat"] is True
    assert soak.verdict_of(result) == "growth in gateway.rss_bytes"


def test_percentiles_and_windows_per_kind() -> None:
    window = soak.window_latency([("chat", 0.010, "200"), ("chat", 0.030, "200"), ("rag", 0.5, "429 x")])
    assert window["chat"]["count"] == 2 and window["chat"]["p50_ms"] == 10.0 and window["chat"]["p99_ms"] == 30.0
    assert window["rag"]["outcomes"] == {"429 x": 1}
    assert math.isnan(soak.percentile([], 99))


def test_a_window_without_a_measured_request_of_a_kind_reads_n_0_not_nan() -> None:
    """The per-window table and the slopes: an empty window (absent, null, or NaN from an older result) is
    shown as `- (n=0)` and left out of the latency series, never printed as NaN."""
    chat = soak.window_latency([("chat", 0.010, "200"), ("chat", 0.030, "200")])["chat"]
    empty_nan = {"count": 0, "outcomes": {}, "p50_ms": math.nan, "p99_ms": math.nan}
    empty_null = {"count": 0, "outcomes": {}, "p50_ms": None, "p99_ms": None}
    assert soak.latency_cell(chat) == "10 / 30 (2)"
    assert soak.latency_cell(None) == soak.latency_cell(empty_nan) == soak.latency_cell(empty_null) == "- (n=0)"
    latencies = ({"chat": chat}, {"chat": empty_nan}, {"rag": chat}, {"chat": empty_null}, {"chat": chat})
    samples = [sample(300 * i, 100, 40) for i in range(1, 6)]
    for s, lat in zip(samples, latencies, strict=True):
        s["latency"] = lat
    result = {"machine": {"host": "h", "cpus": 2, "cpu_model": "c", "memory_bytes": 2**30, "os": "o", "python": "3"},
              "config": {"duration_s": 1500, "port_offset": 0, "gateway_workers": 1, "rate": 1, "max_tokens": 8,
                         "seed": 1, "window_s": 300, "warmup_s": 0},
              "started": "s", "finished": "f", "loadavg_start": [0], "loadavg_end": [0], "services": ["gateway"],
              "analysis": soak.analyse(samples, 0), "verdict": "flat", "samples": samples}  # fmt: skip
    text = soak.report_markdown(result)
    assert "nan" not in text.lower()
    assert "| 10.0 min | - (n=0) | - (n=0) |" in text  # NaN figures
    assert "| 15.0 min | - (n=0) | 10 / 30 (2) |" in text  # the kind absent from the window
    assert "| 20.0 min | - (n=0) | - (n=0) |" in text  # null figures
    assert result["analysis"]["latency.chat.p99_ms"]["n"] == 2  # the slope uses the two measured windows only


@pytest.fixture
def gateway_proc(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[tuple[str, int, str]]:
    """A gateway process routing FAKE_MODEL to the FAKE upstream: (url, pid, Redis prefix)."""
    prefix = f"test:soak:{secrets.token_hex(3)}"
    routes = tmp_path / "routes.yaml"
    deployment = {"name": "fake", "url": f"http://127.0.0.1:{fake_upstream.port}/v1", "model": FAKE_MODEL}
    routes.write_text(yaml.safe_dump({"models": [{"name": FAKE_MODEL, "price": PRICE, "deployments": [deployment]}]}))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}:{REPO / 'libs'}",
        "GATEWAY_ADMIN_KEY": ADMIN,
        "GATEWAY_REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": prefix,
        "GATEWAY_EVENTS_STREAM": f"{prefix}:events",
        "GATEWAY_ROUTES_FILE": str(routes),
    }
    cmd = [sys.executable, "-m", "uvicorn", "services.gateway.app:create_app", "--factory", "--port", str(port)]
    with server_process(cmd, tmp_path / "gateway.log", env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/readyz", proc=proc)
        yield url, proc.pid, prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


def test_the_recorder_samples_a_running_gateway_under_the_demo_mix(
    gateway_proc: tuple[str, int, str], tmp_path: Path
) -> None:
    url, pid, prefix = gateway_proc
    admin = httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    admin.post("/admin/teams", json={"team": "soak-smoke"}).raise_for_status()
    key = admin.post("/admin/keys", json={"team": "soak-smoke"}).json()["key"]
    demo = soak.load_demo_traffic()
    config = demo.Config(url, key, ADMIN, closed_port_url().removesuffix("/v1"), closed_port_url(), FAKE_MODEL)
    log = soak.LatencyLog()
    traffic = soak.timed_traffic(demo, config, log, seed=1, max_tokens=8)
    traffic.check_platform()  # rag and feedback are not there: the mix is chats, streams, attacks, PII, bursts
    recorder = soak.Recorder(lambda: {"gateway": pid}, redis.Redis.from_url(REDIS_URL), key_prefix=prefix)
    try:
        samples = soak.run(traffic.step, recorder, log, duration_s=4, window_s=2, rate=20)
    finally:
        traffic.close()
        admin.close()

    assert len(samples) == 3 and samples[0]["t_s"] == 0.0
    for s in samples:
        gateway = s["services"]["gateway"]
        assert gateway["processes"] == 1 and gateway["rss_bytes"] > 20 * soak.MIB and gateway["fds"] > 5
        assert 0 < gateway["rss_anon_bytes"] < gateway["rss_bytes"]
    last = samples[-1]
    assert last["redis"]["keys"] > 0 and all(k.startswith(prefix) for k in last["redis"]["families"])
    assert f"{prefix}:events" in last["redis"]["streams"] and last["redis"]["streams"][f"{prefix}:events"]["len"] > 0
    chats = [s["latency"]["chat"] for s in samples[1:] if "chat" in s["latency"]]
    assert chats and all(c["count"] > 0 and 0 < c["p50_ms"] <= c["p99_ms"] for c in chats)
    assert sum(c["outcomes"].get("200", 0) for c in chats) == sum(c["count"] for c in chats)

    config = {"warmup_s": 0, "duration_s": 4, "window_s": 2, "rate": 20, "max_tokens": 8, "seed": 1}
    result = soak.build_result(samples, {**config, "port_offset": 0, "gateway_workers": 1}, started="smoke")
    for series in ("gateway.rss_bytes", "gateway.rss_anon_bytes", "gateway.fds", "redis.used_memory", "redis.keys"):
        assert result["analysis"][series]["n"] == 3 and isinstance(result["analysis"][series]["flat"], bool)
    json_path, md_path = soak.write_result(result, tmp_path, "soak-smoke")
    assert "gateway.rss_bytes" in md_path.read_text() and json_path.stat().st_size > 0
