"""The async face of the store: blocking DB calls run on two threads (one writer, one reader)."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from services.feedback.store.db import (
    Database,
    PostgresDatabase,
    SqliteDatabase,
    is_postgres_url,
    normalize_pg_url,
)
from services.feedback.store.schema import create_schema

T = TypeVar("T")
log = logging.getLogger("llmops.feedback.store")


class StoreUnavailable(RuntimeError):
    """The database could not be reached; the connection is reopened on the next call."""


class StorageFull(StoreUnavailable):
    """The disk under the database (or the export folder) is full: nothing was written, retry once space is freed."""


_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def _is_full(exc: BaseException) -> bool:
    """Whether a database error means no space left (SQLite's SQLITE_FULL, PostgreSQL's disk_full, ENOSPC)."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, psycopg.errors.DiskFull) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


class Store:
    """Writes go through one thread and connection (batches commit in order); reads use another."""

    def __init__(self, open_db: Callable[[], Database], description: str) -> None:
        self._open_db = open_db
        self.description = description
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback-db-write")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback-db-read")
        self._write_db: Database | None = None
        self._read_db: Database | None = None

    @classmethod
    def from_settings(cls, database_url: str | None, sqlite_path: Path) -> Store:
        """PostgreSQL when the URL says so, else the SQLite file."""
        if is_postgres_url(database_url):
            url = normalize_pg_url(database_url)  # type: ignore[arg-type]
            return cls(lambda: PostgresDatabase(url), "postgresql")
        if database_url and not database_url.startswith("sqlite"):
            raise ValueError(f"unsupported database URL scheme: {database_url.split(':', 1)[0]}")
        if database_url:  # sqlite:///relative or sqlite:////absolute, as SQLAlchemy spells it
            sqlite_path = Path(database_url.split(":///", 1)[1])
        return cls(lambda: SqliteDatabase(sqlite_path), f"sqlite:{sqlite_path}")

    @property
    def dialect(self) -> str:
        """sqlite or postgresql."""
        return "postgresql" if self.description == "postgresql" else "sqlite"

    async def open(self) -> None:
        """Connect both threads and create the schema."""
        loop = asyncio.get_running_loop()
        self._write_db = await loop.run_in_executor(self._writer, self._open_db)
        await loop.run_in_executor(self._writer, create_schema, self._write_db)
        self._read_db = await loop.run_in_executor(self._reader, self._open_db)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(db, *args) on the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._call, "_write_db", fn, args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(db, *args) on the reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._call, "_read_db", fn, args)

    def _call(self, slot: str, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """On the slot's thread: (re)connect if needed, run fn; a lost connection is dropped for the next call."""
        db: Database | None = getattr(self, slot)
        if db is None:
            try:
                db = self._open_db()
            except (psycopg.OperationalError, sqlite3.OperationalError) as exc:
                raise StoreUnavailable(str(exc)) from exc
            setattr(self, slot, db)
        try:
            return fn(db, *args)
        except (sqlite3.Error, psycopg.errors.DiskFull, OSError) as exc:
            if _is_full(exc):  # the transaction was rolled back: nothing half-written, the file stays sound
                raise StorageFull(f"no space left on the feedback store's disk ({self.description}): {exc}") from exc
            raise
        except psycopg.OperationalError as exc:  # server gone or restarted: reconnect next time
            log.warning("database connection lost; reconnecting on the next call", extra={"error": str(exc)})
            setattr(self, slot, None)
            try:
                db.close()
            except psycopg.Error:
                log.debug("closing the broken connection failed too")
            raise StoreUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        """True when the reader connection answers."""
        try:
            await self.read(lambda db: db.query("SELECT 1 AS ok"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Close connections and stop the threads."""
        loop = asyncio.get_running_loop()
        if self._write_db is not None:
            await loop.run_in_executor(self._writer, self._write_db.close)
        if self._read_db is not None:
            await loop.run_in_executor(self._reader, self._read_db.close)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
