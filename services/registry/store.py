"""The governance store: tables MLflow has no place for (audit log, promotions, policies, principals, datasets).

SQLite beside MLflow's data by default, PostgreSQL through `REGISTRY_DATABASE_URL`; SQLAlchemy Core keeps
the SQL portable. Calls are synchronous and run in worker threads (see `run_sync`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)

T = TypeVar("T")

# The PostgreSQL advisory lock that serialises governance writes across processes (any fixed 64-bit number).
_WRITE_LOCK_KEY = 0x6C6C6D6F70735247  # "llmopsRG"

metadata = MetaData()

principals = Table(
    "principals",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("team", String(128), nullable=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(128), nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    # seq is the primary key: two writers racing for the same seq cannot fork the hash chain.
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(512), nullable=False, index=True),
    Column("reason", Text, nullable=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The audit chain's anchor: its head (seq + hash), rewritten in the same transaction as every append, so
# deleting the newest entries (tail truncation) leaves a head that no longer matches; optionally HMAC-signed.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=True),
)

# Creating or elevating a principal outside dev mode: a request that a second admin decides (four-eyes).
principal_requests = Table(
    "principal_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(16), nullable=False),  # create | elevate
    Column("name", String(128), nullable=False, index=True),
    Column("role", String(32), nullable=False),
    Column("team", String(128), nullable=True),
    Column("token_sha256", String(64), nullable=True),
    Column("requested_by", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", Float, nullable=True),
)

promotions = Table(
    "promotions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("object_type", String(16), nullable=False),
    Column("name", String(256), nullable=False, index=True),
    Column("alias", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("from_version", String(32), nullable=True),
    Column("requested_by", String(128), nullable=False),
    Column("reason", Text, nullable=True),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", Float, nullable=True),
    Column("decision_reason", Text, nullable=True),
    Column("policy", String(128), nullable=True),
)

policies = Table(
    "policies",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("object_type", String(16), nullable=False),
    Column("name_pattern", String(256), nullable=False),
    Column("aliases", JSON, nullable=False),
    Column("required_evals", JSON, nullable=False),
    # Added after the first release: stores created before it get the column from _migrate (NULL = {}).
    Column("version_tags", JSON, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(128), nullable=False),
    Column("schema", JSON, nullable=True),
    Column("row_count", Integer, nullable=False),
    Column("source", Text, nullable=False),
    Column("source_type", String(32), nullable=False),
    Column("producer_run_id", String(64), nullable=True),
    Column("mlflow_run_id", String(64), nullable=False),
    Column("description", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
    UniqueConstraint("name", "digest", name="uq_dataset_digest"),
)


class Store:
    """Owns the SQLAlchemy engine; `transaction()` is the only way code writes."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        # One writer at a time inside a process: SQLite allows no more, and the audit chain wants order.
        self._write_lock = threading.Lock()
        with self.transaction() as conn:  # replicas starting together must not race to create the tables
            metadata.create_all(conn)
            _migrate(conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A serialised write transaction: committed on success, rolled back on any error."""
        with self._write_lock, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several replicas (or uvicorn workers) share one PostgreSQL database: without a lock they read
                # the same last audit seq and all but one fail on its primary key. The lock ends with the transaction.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection."""
        with self.engine.connect() as conn:
            yield conn

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # readiness must answer, never raise: any failure means not ready
            return False

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


# Columns added to existing tables since their first release: (table, column, SQL type). create_all makes missing
# tables only, so a store created by an older release gets these here, once, in the same startup transaction.
_ADDED_COLUMNS = [("policies", "version_tags", "JSON")]


def _migrate(conn: Connection) -> None:
    """Add the columns an older store lacks (idempotent; SQLite and PostgreSQL both take ADD COLUMN)."""
    inspector = inspect(conn)
    for table, column, sql_type in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets readers proceed while the single writer commits.
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


async def run_sync(fn: Callable[..., T], *args: object) -> T:
    """Run blocking store or MLflow work off the event loop."""
    return await anyio.to_thread.run_sync(fn, *args)
