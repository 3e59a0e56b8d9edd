"""The PostgreSQL schema, its version and the migrations that reach it.

``taskloom_schema`` holds one row per applied migration. Opening a store applies the missing
ones in one transaction under an advisory lock (two processes opening a new database at once
migrate it once). A database whose schema is newer than this code is refused untouched.

The tables mirror the SQLite store's (see ``taskloom_std.stores.schema``), with the same
meaning; ``rowid`` columns keep the order rows were written in, as SQLite's rowid does.
"""

from __future__ import annotations

from typing import Any

from taskloom_std.stores.errors import StoreVersionError

#: ``pg_advisory_xact_lock`` key held while migrating ("TLOM").
MIGRATION_LOCK = 0x544C4F4D

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            workflow TEXT,
            config_hash TEXT,
            config_path TEXT,
            status TEXT NOT NULL,
            started DOUBLE PRECISION,
            finished DOUBLE PRECISION,
            duration DOUBLE PRECISION,
            counts TEXT,
            resumes INTEGER NOT NULL DEFAULT 0,
            pid INTEGER,
            host TEXT
        )""",
        "CREATE INDEX runs_started ON runs(started)",
        "CREATE INDEX runs_workflow_started ON runs(workflow, started)",
        "CREATE INDEX runs_status_started ON runs(status, started)",
        """CREATE TABLE events (
            rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id TEXT NOT NULL,
            t DOUBLE PRECISION NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_run ON events(run_id, rowid)",
        """CREATE TABLE errors (
            rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            state TEXT NOT NULL,
            t DOUBLE PRECISION NOT NULL,
            attempt INTEGER,
            error_type TEXT,
            message TEXT,
            traceback TEXT
        )""",
        "CREATE INDEX errors_run ON errors(run_id, rowid)",
        """CREATE TABLE results (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            kind TEXT NOT NULL,
            value BYTEA,
            note TEXT,
            cache_hit INTEGER NOT NULL DEFAULT 0,
            t DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, task)
        )""",
        """CREATE TABLE cache (
            key TEXT PRIMARY KEY,
            task TEXT,
            kind TEXT NOT NULL,
            value BYTEA,
            created DOUBLE PRECISION NOT NULL,
            expires DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE schedule_state (
            job_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            updated DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE schedule_claims (
            job_id TEXT NOT NULL,
            fire_time DOUBLE PRECISION NOT NULL,
            owner TEXT NOT NULL,
            claimed DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (job_id, fire_time)
        )""",
        """CREATE TABLE logs (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            t DOUBLE PRECISION NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (run_id, task, attempt)
        )""",
        """CREATE TABLE run_actions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id TEXT,
            workflow TEXT,
            action TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested DOUBLE PRECISION NOT NULL,
            handled DOUBLE PRECISION,
            detail TEXT
        )""",
        "CREATE INDEX run_actions_run ON run_actions(run_id)",
    ),
    # What started each run and the run it continues (as in the SQLite store's schema 6).
    2: (
        "ALTER TABLE runs ADD COLUMN trigger TEXT",
        "ALTER TABLE runs ADD COLUMN parent_id TEXT",
        "ALTER TABLE runs ADD COLUMN overrides TEXT",
        "CREATE INDEX runs_parent ON runs(parent_id)",
    ),
    # One row per run id being run: the process holding it and its last heartbeat (server
    # time), as in the SQLite store's schema 7 (taskloom_postgres.claims).
    3: (
        """CREATE TABLE run_claims (
            run_id TEXT PRIMARY KEY,
            workflow TEXT,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            claimed DOUBLE PRECISION NOT NULL,
            heartbeat DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX run_claims_workflow ON run_claims(workflow)",
    ),
    # The fires a scheduler skipped, misfires and overlaps (the SQLite store's schema 8);
    # each job keeps its newest taskloom_std.stores.schema.SKIPS_KEPT.
    4: (
        """CREATE TABLE schedule_skips (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            scheduled_for DOUBLE PRECISION NOT NULL,
            recorded DOUBLE PRECISION NOT NULL,
            detail TEXT
        )""",
        "CREATE INDEX schedule_skips_job ON schedule_skips(job_id, id)",
    ),
    # Signals sent to runs and the steps waiting, with their due time (the SQLite store's
    # schema 9), so a wait outlives its process (taskloom_postgres.signals).
    5: (
        """CREATE TABLE signals (
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT,
            sent DOUBLE PRECISION NOT NULL,
            sent_by TEXT,
            PRIMARY KEY (run_id, name)
        )""",
        """CREATE TABLE waits (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            kind TEXT NOT NULL,
            signal TEXT,
            started DOUBLE PRECISION NOT NULL,
            due DOUBLE PRECISION,
            schema TEXT,
            ended DOUBLE PRECISION,
            PRIMARY KEY (run_id, task)
        )""",
    ),
}

#: The version this code writes.
SCHEMA_VERSION = max(MIGRATIONS)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS taskloom_schema (
    version INTEGER PRIMARY KEY,
    applied DOUBLE PRECISION NOT NULL DEFAULT extract(epoch from now())
)"""


def read_version(conn: Any) -> int | None:
    """The applied schema version; None when the database holds no taskloom schema."""
    row = conn.execute("SELECT to_regclass('taskloom_schema') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    row = conn.execute("SELECT coalesce(max(version), 0) FROM taskloom_schema").fetchone()
    return int(row[0])


def check_version(version: int | None, where: str) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"{where} has taskloom schema version {version}, written by a newer "
            f"taskloom-postgres; this version knows up to {SCHEMA_VERSION}. Upgrade "
            "taskloom-postgres or use another database; nothing was changed."
        )


def migrate(conn: Any, where: str, migrations: dict[int, tuple[str, ...]] | None = None) -> int:
    """Bring the schema up to date in one transaction; the version reached.

    ``conn`` must not be in a transaction. A newer schema raises
    :class:`~taskloom_std.stores.errors.StoreVersionError` and changes nothing.
    """
    steps = MIGRATIONS if migrations is None else migrations
    target = max(steps)
    version = read_version(conn)
    check_version(version, where)
    if version == target:
        return target
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_VERSION_TABLE)
        # Another process may have migrated while this one waited for the lock.
        current = read_version(conn) or 0
        check_version(current, where)
        for number in range(current + 1, target + 1):
            for statement in steps[number]:
                conn.execute(statement)
            conn.execute("INSERT INTO taskloom_schema(version) VALUES (%s)", (number,))
    return target
