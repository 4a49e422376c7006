"""Tables of the feedback store (SQLite spelling; db.py adapts it for PostgreSQL), and their migrations.

Version 2 keys everything a team owns by the team: a request is (team, request_id), so two teams sending the
same `x-request-id` get two rows and neither hides the other; dataset versions count per (team scope, name).
A version-1 store (request id alone as the key) is migrated in place at start, keeping its rows.
"""

from __future__ import annotations

from services.feedback.store.db import Database

SCHEMA_VERSION = 2

_REQUEST_COLUMNS_V1 = """request_id, stream_id, trace_id, ts, ingested_at, team, project, key_id, model, model_version,
    deployment, prompt_version, endpoint, status, error_code, prompt_tokens, completion_tokens, cost_usd, latency_ms,
    ttft_ms, stream, guardrails, retrieval, prompt, response, mean_logprob, prompt_chars, response_chars,
    max_retrieval_score, guardrail_flagged, refusal"""
_LABEL_COLUMNS_V1 = """id, request_id, team, created_at, reasons, priority, status, taken_by, lease_until, label,
    corrected_answer, comment, labeled_by, labeled_at"""
_DATASET_COLUMNS_V1 = "id, name, version, created_at, team, sha256, rows, path, filters, registered_in, registry_ref"

TABLES = {
    "requests": """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT NOT NULL,
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
        refusal INTEGER NOT NULL,
        text_withheld TEXT,
        PRIMARY KEY (team, request_id)
    )""",
    "feedback": """CREATE TABLE IF NOT EXISTS feedback (
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
    "label_items": """CREATE TABLE IF NOT EXISTS label_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
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
        labeled_at REAL,
        UNIQUE (team, request_id)
    )""",
    "dead_letters": """CREATE TABLE IF NOT EXISTS dead_letters (
        stream_id TEXT PRIMARY KEY,
        received_at REAL NOT NULL,
        reason TEXT NOT NULL,
        raw TEXT
    )""",
    # scope: the owning team, or '' for an admin's all-teams export (NULL would not be unique in SQL).
    "datasets": """CREATE TABLE IF NOT EXISTS datasets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        team TEXT,
        created_by TEXT,
        sha256 TEXT NOT NULL,
        rows INTEGER NOT NULL,
        path TEXT NOT NULL,
        filters TEXT NOT NULL,
        registered_in TEXT NOT NULL,
        registry_ref TEXT,
        UNIQUE (scope, name, version)
    )""",
    "schema_version": "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
}

INDEXES = [
    "CREATE INDEX IF NOT EXISTS requests_team_ts ON requests (team, ts)",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    "CREATE INDEX IF NOT EXISTS requests_model_ts ON requests (model, ts)",
    "CREATE INDEX IF NOT EXISTS feedback_team_request ON feedback (team, request_id)",
    "CREATE INDEX IF NOT EXISTS feedback_team_created ON feedback (team, created_at)",
    "CREATE INDEX IF NOT EXISTS label_items_queue ON label_items (team, status, priority, created_at)",
]


def _has_table(db: Database, name: str) -> bool:
    if db.dialect == "postgresql":
        return bool(db.query("SELECT to_regclass(?) IS NOT NULL AS present", [name])[0]["present"])
    return bool(db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]))


def current_version(db: Database) -> int:
    """0 for an empty database, 1 for a store made before versions were recorded, else the recorded version."""
    if _has_table(db, "schema_version"):
        rows = db.query("SELECT version FROM schema_version WHERE id = 1")
        if rows:
            return int(rows[0]["version"])
    return 1 if _has_table(db, "requests") else 0


def _rebuild_sqlite(db: Database, table: str, columns: str, select: str | None = None) -> None:
    """SQLite cannot change a key in place: rename, create the new table, copy, drop the old one."""
    db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    db.execute(TABLES[table])
    db.execute(f"INSERT INTO {table} ({columns}) SELECT {select or columns} FROM {table}_v1")
    db.execute(f"DROP TABLE {table}_v1")


def _drop_unique_constraints_pg(db: Database, table: str) -> None:
    """Drop a table's primary key and unique constraints, whatever PostgreSQL named them."""
    rows = db.query(
        "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(?) AND contype IN ('p', 'u')", [table]
    )
    for row in rows:
        db.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{row["conname"]}"')


def migrate_1_to_2(db: Database) -> None:
    """Key requests and label items by (team, request id); scope dataset versions by team; keep every row."""
    if db.dialect == "postgresql":
        db.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS text_withheld TEXT")
        _drop_unique_constraints_pg(db, "requests")
        db.execute("ALTER TABLE requests ADD PRIMARY KEY (team, request_id)")
        _drop_unique_constraints_pg(db, "label_items")
        db.execute("ALTER TABLE label_items ADD PRIMARY KEY (id)")
        db.execute("ALTER TABLE label_items ADD UNIQUE (team, request_id)")
        db.execute("ALTER TABLE datasets ADD COLUMN IF NOT EXISTS scope TEXT NOT NULL DEFAULT ''")
        db.execute("ALTER TABLE datasets ADD COLUMN IF NOT EXISTS created_by TEXT")
        db.execute("UPDATE datasets SET scope = COALESCE(team, '')")
        _drop_unique_constraints_pg(db, "datasets")
        db.execute("ALTER TABLE datasets ADD PRIMARY KEY (id)")
        db.execute("ALTER TABLE datasets ADD UNIQUE (scope, name, version)")
    else:
        _rebuild_sqlite(db, "requests", _REQUEST_COLUMNS_V1)
        _rebuild_sqlite(db, "label_items", _LABEL_COLUMNS_V1)
        _rebuild_sqlite(
            db,
            "datasets",
            "scope, " + _DATASET_COLUMNS_V1,
            "COALESCE(team, ''), " + _DATASET_COLUMNS_V1,
        )
    db.execute("DROP INDEX IF EXISTS feedback_request")


def create_schema(db: Database) -> None:
    """Create missing tables and indexes or migrate an older store (idempotent; safe for replicas starting at once)."""
    with db.transaction():
        if db.dialect == "postgresql":
            # Serialize concurrent CREATE TABLE IF NOT EXISTS and migrations from replicas starting at once.
            db.execute("SELECT pg_advisory_xact_lock(4004)")
        version = current_version(db)
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"the feedback store has schema {version}; this service knows up to {SCHEMA_VERSION}")
        if version == 1:
            migrate_1_to_2(db)
        for statement in TABLES.values():
            db.execute(statement)
        for statement in INDEXES:
            db.execute(statement)
        db.execute("DELETE FROM schema_version WHERE id = 1")
        db.execute("INSERT INTO schema_version (id, version) VALUES (1, ?)", [SCHEMA_VERSION])
