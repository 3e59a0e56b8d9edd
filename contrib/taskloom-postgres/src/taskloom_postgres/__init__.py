"""taskloom-postgres: run history, results, the result cache and schedule state in PostgreSQL.

Configured in TOML::

    [taskloom]
    store = "postgres"
    store_options = { dsn = "postgresql://taskloom@db.internal/taskloom", durability = "fast" }

or with ``TASKLOOM_STORE_OPTIONS__DSN``. Every process given the same DSN shares one history
and one schedule state: two schedulers on two hosts fire each scheduled run once. The schema
is created and migrated on first use (``taskloom_schema`` holds its version).

The ``history`` component ``postgres`` lets the CLI read that history: ``taskloom runs --db
postgresql://...``, or ``taskloom runs -c taskloom.toml`` when the configuration names this
store.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskloom import TaskloomError, hookimpl
from taskloom.api.history import HistoryProvider, RunHistoryReader
from taskloom_postgres.schedule import PostgresScheduleState
from taskloom_postgres.store import PostgresStore, SafePostgresStore, create_postgres_store

__all__ = [
    "PostgresHistory",
    "PostgresScheduleState",
    "PostgresStore",
    "SafePostgresStore",
    "create_postgres_store",
]
__version__ = "0.1.0"

_SCHEMES = ("postgresql://", "postgres://")


class PostgresHistory:
    """The CLI's history in PostgreSQL: the location is the database's DSN."""

    store = "postgres"

    def accepts(self, location: str) -> bool:
        """A ``postgresql://`` DSN is this provider's; a file path is not."""
        return location.startswith(_SCHEMES)

    def record_options(self, options: Mapping[str, Any], base_dir: Path,
                       config_path: Path | None, location: str | None) -> dict[str, Any]:
        out = dict(options)
        if location is not None:
            out["dsn"] = location
        if config_path is not None:
            out.setdefault("config_path", str(config_path))
        return out

    def locate(self, given: str | None, config_file: str | None,
               options: Mapping[str, Any] | None = None) -> str:
        if given:
            return given
        if options and isinstance(options.get("dsn"), str) and options["dsn"]:
            return str(options["dsn"])
        from taskloom import load_config

        try:
            config = load_config(Path(config_file) if config_file else None)
        except TaskloomError as exc:
            raise TaskloomError(f"cannot read the configuration for the store's DSN: {exc}"
                                ) from exc
        dsn = config.settings.get("store_options", {}).get("dsn")
        if not isinstance(dsn, str) or not dsn:
            raise TaskloomError("store 'postgres': no DSN; give --db postgresql://... or "
                                "store_options.dsn (TASKLOOM_STORE_OPTIONS__DSN)")
        return dsn

    def below(self, folder: Path, depth: int = 3) -> list[Path]:
        """A database server's history is not in a folder: nothing to suggest."""
        return []

    def upgrade(self, location: str) -> tuple[str, int | None, int]:
        """``taskloom db upgrade``: apply the pending migrations at the DSN ``location`` (an
        empty database gets the whole schema), under the same advisory lock as a store
        opening it; a newer schema is refused untouched."""
        import psycopg

        from taskloom_postgres.schema import migrate, read_version
        from taskloom_postgres.store import redact

        where = redact(location)
        try:
            with psycopg.connect(location, autocommit=True, connect_timeout=10,
                                 application_name="taskloom db upgrade") as conn:
                before = read_version(conn)
                after = migrate(conn, where)
        except psycopg.Error as exc:
            raise TaskloomError(f"store 'postgres': cannot upgrade {where}: "
                                f"{str(exc).strip()}") from exc
        return where, before, after

    def open(self, location: str, read_only: bool = True) -> RunHistoryReader:
        return create_postgres_store(dsn=location, read_only=read_only)


def _history() -> HistoryProvider:
    return PostgresHistory()  # mypy holds PostgresHistory to the protocol the CLI reads


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("store", "postgres", create_postgres_store)
    registry.add("history", "postgres", _history)
