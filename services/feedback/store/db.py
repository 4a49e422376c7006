"""One thin DB-API layer over SQLite (default) and PostgreSQL, so the store's SQL is written once.

SQL is written with `?` placeholders and the SQLite spelling; the PostgreSQL dialect rewrites the few
differences. Calls are synchronous: the async store runs them on its own threads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]


class Database:
    """A single connection; not shared between threads (each store thread opens its own)."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement inside the current transaction; returns the affected row count."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a SELECT (or RETURNING) and return rows as dicts."""
        raise NotImplementedError

    def insert_ignoring_conflicts(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows; rows whose primary key exists already are skipped (inside the current transaction)."""
        marks = ", ".join("?" * len(columns.split(",")))
        self.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit on success, roll back on any error: nothing is half-written."""
        raise NotImplementedError
        yield

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError


class SqliteDatabase(Database):
    """SQLite in WAL mode: one writer and concurrent readers on the same file."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) so a batch is one commit.
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        self.conn.execute("PRAGMA busy_timeout=30000")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement."""
        return self.conn.execute(sql, tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many rows."""
        self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows as dicts."""
        return [dict(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock mid-batch."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def _pg(sql: str) -> str:
    """Rewrite the SQLite spelling into PostgreSQL's (placeholders and types)."""
    return (
        sql.replace("?", "%s")
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace(" REAL", " DOUBLE PRECISION")
    )


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3; statements outside a transaction() autocommit."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement."""
        with self.conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many rows (psycopg pipelines them)."""
        with self.conn.cursor() as cur:
            cur.executemany(_pg(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows as dicts."""
        with self.conn.cursor() as cur:
            cur.execute(_pg(sql), tuple(params))
            return list(cur.fetchall())

    def insert_ignoring_conflicts(self, table: str, columns: str, rows: Sequence[Sequence[Any]]) -> None:
        """COPY into a per-connection staging table, then INSERT ... SELECT: several times faster than row inserts."""
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table}_stage (LIKE {table}) ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY {table}_stage ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_stage ON CONFLICT DO NOTHING")
            cur.execute(f"TRUNCATE {table}_stage")  # also outside a transaction block, where ON COMMIT never fires

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A psycopg transaction block (rolled back on error)."""
        with self.conn.transaction():
            yield

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def is_postgres_url(url: str | None) -> bool:
    """True for postgresql:// and postgres:// URLs (SQLAlchemy-style +driver suffixes allowed)."""
    if not url:
        return False
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def normalize_pg_url(url: str) -> str:
    """Drop a SQLAlchemy driver suffix (postgresql+psycopg://) that libpq does not understand."""
    scheme, rest = url.split(":", 1)
    return scheme.split("+", 1)[0] + ":" + rest
