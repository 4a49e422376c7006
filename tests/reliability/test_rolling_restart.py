"""A rolling restart of the gateway under steady load loses no request (issue 15, item 3).

The gateway runs as `make up GATEWAY_WORKERS=2` runs it: two uvicorn workers behind one port, under uvicorn's
supervisor. SIGHUP to the supervisor replaces the workers one at a time, each new worker ready (its lifespan
started) before the old one is told to stop; the old one finishes what it has in flight and closes its idle
keep-alive connections. Clients (keep-alive, no retries) send plain chats, streams and slow chats (0.5 s at the
upstream, so some are always in flight when a worker stops) the whole time: every one must be answered 200.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import yaml

from bench.procstats import children_map
from tests.reliability.conftest import FAKE_MODEL, PRICE
from tests.support.fake_cutting_upstream import CuttingUpstream, cutting_upstream_in_thread
from tests.support.fake_upstream import FakeUpstream
from tests.support.fixtures import ADMIN, REDIS_URL
from tests.support.servers import REPO, uvicorn_process

pytestmark = pytest.mark.integration

SLOW_MODEL = "slow-model"
ROLL_BOUND_S = 90.0  # two workers started one after the other on a loaded 2-core machine
CLIENTS = (("chat", FAKE_MODEL, False), ("chat", FAKE_MODEL, False), ("stream", FAKE_MODEL, True))
SLOW_CLIENTS = (("slow", SLOW_MODEL, False),) * 3


def platformctl() -> ModuleType:
    """scripts/platformctl.py as a module (what `make up` runs)."""
    spec = importlib.util.spec_from_file_location("platformctl_roll", REPO / "scripts" / "platformctl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def worker_pids(supervisor: int) -> set[int]:
    """uvicorn's worker processes under its supervisor (multiprocessing's resource tracker left out)."""
    out = set()
    for pid in children_map().get(supervisor, []):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out.add(pid)
    return out


def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


@dataclass
class Load:
    """Client threads sending requests until stopped; every outcome is kept with its start and end time."""

    url: str
    key: str
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[tuple[float, float, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, after: float = 0.0) -> int:
        with self.lock:
            return sum(1 for start, _, _, outcome in self.outcomes if outcome == "200" and start >= after)

    def client(self, kind: str, model: str, stream: bool) -> None:
        body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            body["stream"] = True
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:  # keep-alive, no retries
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    with http.stream("POST", "/v1/chat/completions", json=body) as response:
                        text = response.read().decode()
                    outcome = str(response.status_code)
                    if stream and (response.status_code != 200 or not text.rstrip().endswith("data: [DONE]")):
                        outcome = f"{response.status_code} stream without [DONE]"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    self.outcomes.append((start, time.monotonic(), kind, outcome))


@pytest.fixture
def slow_upstream() -> Iterator[CuttingUpstream]:
    with cutting_upstream_in_thread() as fake:
        fake.mode, fake.delay_s = "slow", 0.5
        yield fake


@pytest.fixture
def two_worker_gateway(
    tmp_path: Path, fake_upstream: FakeUpstream, slow_upstream: CuttingUpstream
) -> Iterator[tuple[str, int]]:
    """The gateway with two workers behind one port: (url, supervisor pid)."""
    name, ctl = secrets.token_hex(3), platformctl()
    models = [
        {"name": model, "price": PRICE, "deployments": [{"name": "d", "url": f"http://127.0.0.1:{port}/v1"}]}
        for model, port in ((FAKE_MODEL, fake_upstream.port), (SLOW_MODEL, slow_upstream.port))
    ]
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({"models": models}))
    env = {
        "GATEWAY_ADMIN_KEY": ADMIN,
        "GATEWAY_REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": f"test:roll:{name}",
        "GATEWAY_EVENTS_STREAM": f"test:roll:events:{name}",
        "GATEWAY_ROUTES_FILE": str(routes),
        # The drain and the supervisor's readiness wait as `make up GATEWAY_WORKERS=2` sets them (platformctl).
        "GATEWAY_SHUTDOWN_DRAIN_S": str(ctl.DRAIN_S),
    }
    app = "services.gateway.app:create_app"
    args = ("--timeout-worker-healthcheck", str(ctl.WORKER_HEALTHCHECK_S))
    with uvicorn_process(app, env, log_path=tmp_path / "gateway.log", workers=2, args=args) as (url, proc):
        wait_for(lambda: len(worker_pids(proc.pid)) == 2, 60, "two gateway workers up")
        yield url, proc.pid


def test_a_rolling_restart_of_a_two_worker_gateway_fails_no_request(two_worker_gateway: tuple[str, int]) -> None:
    url, supervisor = two_worker_gateway
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30) as admin:
        admin.post("/admin/teams", json={"team": "roll", "rpm_limit": 100_000}).raise_for_status()
        key = admin.post("/admin/keys", json={"team": "roll", "rpm_limit": 100_000}).json()["key"]
    load = Load(url, key)
    threads = [threading.Thread(target=load.client, args=c, daemon=True) for c in CLIENTS + SLOW_CLIENTS]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: load.ok() >= 30, 60, "steady load before the roll")
        old = worker_pids(supervisor)
        rolled_at = time.monotonic()
        os.kill(supervisor, signal.SIGHUP)
        wait_for(
            lambda: not (worker_pids(supervisor) & old) and len(worker_pids(supervisor)) == 2,
            ROLL_BOUND_S,
            "both workers replaced",
        )
        rolled = time.monotonic()
        wait_for(lambda: load.ok(after=rolled) >= 30, 60, "steady load after the roll")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=40)

    failed = [o for o in load.outcomes if o[3] != "200"]
    assert failed == [], f"{len(failed)} of {len(load.outcomes)} requests failed across the roll: {failed[:5]}"
    during = [o for o in load.outcomes if rolled_at <= o[0] <= rolled]
    # Every kind was served mid-roll; three slow chats are in flight at any instant, so each stopping worker had
    # some to finish (drained, not cut).
    assert {kind for _, _, kind, _ in during} == {"chat", "stream", "slow"}
