"""The stores the conformance suite checks: each test runs once per store it applies to.

``store_kind`` is one of ``memory``, ``sqlite`` and ``postgres`` (a throwaway server: see
``taskloom_postgres.cluster``; skipped without PostgreSQL, failed under ``$CI``). A kind opens
any number of stores on one backing database (``open``), builds engines on it (``engine``) and
writes a raw result row (``plant_result``) to check what a store does with one it did not sign.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom import Engine


class StoreKind:
    """One store on one backing database, opened as often as a test needs."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.options = options
        self.opened: list[Any] = []

    @property
    def persistent(self) -> bool:
        """Whether a second store opened on the database sees what the first recorded."""
        return self.name != "memory"

    @property
    def durable(self) -> bool:
        return self.name != "memory"

    def engine(self, **options: Any) -> Engine:
        engine = Engine(max_workers=4, store=self.name,
                        store_options={**self.options, **options})
        self.opened.append(engine)
        return engine

    def open(self, **options: Any) -> Any:
        """A new store on the same database (for memory: a new, empty store)."""
        engine = self.engine(**options)
        return engine.store

    def plant_result(self, run_id: str, task: str, kind: str, value: bytes) -> None:
        """Overwrite a stored result with a raw row, as someone with database access could."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.options["path"])
            with conn:
                conn.execute("UPDATE results SET kind = ?, value = ? WHERE run_id = ? AND task = ?",
                             (kind, value, run_id, task))
            conn.close()
        elif self.name == "postgres":
            import psycopg

            with psycopg.connect(self.options["dsn"]) as conn:
                conn.execute("UPDATE results SET kind = %s, value = %s WHERE run_id = %s"
                             " AND task = %s", (kind, value, run_id, task))
        else:
            raise AssertionError(f"store {self.name!r} keeps no raw rows")

    def plant_claim(self, run_id: str, workflow: str, pid: int, host: str,
                    heartbeat: float) -> None:
        """A claim row as another process (``pid`` on ``host``) leaves it, its last heartbeat
        at ``heartbeat`` (epoch seconds)."""
        row = (run_id, workflow, pid, host, heartbeat, heartbeat)
        if self.name == "sqlite":
            self.open().flush()  # the schema exists
            conn = sqlite3.connect(self.options["path"])
            with conn:
                conn.execute("INSERT INTO run_claims(run_id, workflow, pid, host, claimed,"
                             " heartbeat) VALUES (?, ?, ?, ?, ?, ?)", row)
            conn.close()
        elif self.name == "postgres":
            import psycopg

            self.open().flush()
            with psycopg.connect(self.options["dsn"]) as conn:
                conn.execute("INSERT INTO run_claims(run_id, workflow, pid, host, claimed,"
                             " heartbeat) VALUES (%s, %s, %s, %s, %s, %s)", row)
        else:
            raise AssertionError(f"store {self.name!r} keeps no raw rows")

    def close(self) -> None:
        for engine in reversed(self.opened):
            engine.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    try:
        from taskloom_postgres.cluster import server_for_tests
    except ImportError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"taskloom-postgres is not installed: {exc}")
    with server_for_tests() as cluster:
        yield cluster


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreKind]:
    name = request.param
    if name == "memory":
        kind = StoreKind("memory", {})
    elif name == "sqlite":
        kind = StoreKind("sqlite", {"path": str(tmp_path / "runs.db")})
    else:
        cluster = request.getfixturevalue("postgres_server")
        if cluster is None:
            pytest.skip("PostgreSQL is not installed here (set CI to make this a failure)")
        from taskloom_postgres.cluster import new_database

        kind = StoreKind("postgres", {"dsn": new_database(cluster, "conformance")})
    try:
        yield kind
    finally:
        kind.close()


@pytest.fixture
def persistent_kind(store_kind: StoreKind) -> StoreKind:
    """The stores whose records outlive the store object (all but memory)."""
    if not store_kind.persistent:
        pytest.skip(f"store {store_kind.name!r} keeps nothing beyond its own object")
    return store_kind
