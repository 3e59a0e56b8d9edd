"""``taskloom db upgrade`` on an SQLite history: versions before and after, a newer schema
refused untouched, no history where none is."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from taskloom.app.cli import main
from taskloom_std.stores.schema import MIGRATIONS, SCHEMA_VERSION, migrate


def _old_database(path: Path, version: int) -> None:
    """A database as a taskloom of schema ``version`` left it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    migrate(conn, 0, version)
    conn.execute("COMMIT")
    conn.close()


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_upgrade_applies_the_pending_migrations_and_reports_both_versions(tmp_path):
    db = tmp_path / "runs.db"
    _old_database(db, 4)
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"{db}: schema version 4 -> schema version "
                                      f"{SCHEMA_VERSION} (upgraded)")
    assert _version(db) == SCHEMA_VERSION == max(MIGRATIONS)
    again = CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)])
    assert again.exit_code == 0
    assert again.output.strip() == f"{db}: schema version {SCHEMA_VERSION}, up to date"


def test_upgrade_finds_the_database_of_a_configuration(tmp_path):
    (tmp_path / "taskloom.toml").write_text('[tasks.a]\ncall = "os:getpid"\n')
    (tmp_path / ".taskloom").mkdir()
    db = tmp_path / ".taskloom" / "taskloom.db"
    _old_database(db, 6)
    result = CliRunner().invoke(main, ["db", "upgrade", "-c",
                                       str(tmp_path / "taskloom.toml")])
    assert result.exit_code == 0, result.output
    assert "schema version 6 -> schema version" in result.output
    assert _version(db) == SCHEMA_VERSION


def test_a_newer_schema_is_refused_and_left_unchanged(tmp_path):
    db = tmp_path / "runs.db"
    _old_database(db, SCHEMA_VERSION)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = db.read_bytes()
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)])
    assert result.exit_code == 2
    assert f"schema version {SCHEMA_VERSION + 1}, written by a newer taskloom" in result.output
    assert "Traceback" not in result.output
    assert db.read_bytes() == before


def test_no_history_there_is_said_and_nothing_is_created(tmp_path):
    db = tmp_path / "nothing.db"
    result = CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)])
    assert result.exit_code == 2
    assert f"no run history at {db}" in result.output
    assert not db.exists()


def test_history_of_an_older_database_points_at_db_upgrade_and_reads_after_it(tmp_path):
    db = tmp_path / "runs.db"
    _old_database(db, 6)
    before = CliRunner().invoke(main, ["runs", "--db", str(db)])
    assert before.exit_code == 2
    assert f"taskloom db upgrade --db {db}" in before.output
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)]).exit_code == 0
    after = CliRunner().invoke(main, ["runs", "--db", str(db)])
    assert after.exit_code == 0, after.output
