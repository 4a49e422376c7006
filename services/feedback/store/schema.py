"""Tables of the feedback store (SQLite spelling; db.py adapts it for PostgreSQL)."""

from __future__ import annotations

from services.feedback.store.db import Database

SCHEMA_VERSION = 1

DDL = [
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY,
        stream_id TEXT,
        trace_id TEXT,
        ts REAL NOT NULL,
        ingested_at REAL NOT NULL,
        team TEXT NOT NULL,
        project TEXT NOT NULL,
        key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        model_version TEXT,
        deployment TEXT,
        prompt_version TEXT,
        endpoint TEXT NOT NULL,
        status INTEGER NOT NULL,
        error_code TEXT,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        latency_ms REAL NOT NULL,
        ttft_ms REAL,
        stream INTEGER NOT NULL,
        guardrails TEXT NOT NULL,
        retrieval TEXT NOT NULL,
        prompt TEXT,
        response TEXT,
        mean_logprob REAL,
        prompt_chars INTEGER NOT NULL,
        response_chars INTEGER NOT NULL,
        max_retrieval_score REAL,
        guardrail_flagged INTEGER NOT NULL,
        refusal INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS requests_team_ts ON requests (team, ts)",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    "CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model, ts)",
    """CREATE TABLE IF NOT EXISTS feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        team TEXT NOT NULL,
        key_id TEXT,
        created_at REAL NOT NULL,
        thumbs TEXT,
        rating INTEGER,
        score REAL NOT NULL,
        categories TEXT NOT NULL,
        comment TEXT,
        corrected_answer TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id)",
    "CREATE INDEX IF NOT EXISTS feedback_team_created ON feedback (team, created_at)",
    """CREATE TABLE IF NOT EXISTS label_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL UNIQUE,
        team TEXT NOT NULL,
        created_at REAL NOT NULL,
        reasons TEXT NOT NULL,
        priority INTEGER NOT NULL,
        status TEXT NOT NULL,
        taken_by TEXT,
        lease_until REAL,
        label TEXT,
        corrected_answer TEXT,
        comment TEXT,
        labeled_by TEXT,
        labeled_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS label_items_queue ON label_items (team, status, priority, created_at)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        stream_id TEXT PRIMARY KEY,
        received_at REAL NOT NULL,
        reason TEXT NOT NULL,
        raw TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS datasets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        team TEXT,
        sha256 TEXT NOT NULL,
        rows INTEGER NOT NULL,
        path TEXT NOT NULL,
        filters TEXT NOT NULL,
        registered_in TEXT NOT NULL,
        registry_ref TEXT,
        UNIQUE (name, version)
    )""",
]


def create_schema(db: Database) -> None:
    """Create missing tables and indexes (idempotent; safe when several replicas start together)."""
    with db.transaction():
        if db.dialect == "postgresql":
            # Serialize concurrent CREATE TABLE IF NOT EXISTS from replicas starting at once.
            db.execute("SELECT pg_advisory_xact_lock(4004)")
        for statement in DDL:
            db.execute(statement)
