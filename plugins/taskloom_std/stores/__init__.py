"""Stores: where runs, attempts, results, the result cache and scheduler state are kept.

``memory`` (the library default) keeps recent runs in the process; ``sqlite`` (the CLI's
default, ``.taskloom/taskloom.db`` beside the config file) survives the process.

What the engine asks of a store (any object registered as kind ``store``) is
:class:`taskloom.kernel.store.RunStore`; the engine calls it directly, not as a plugin, so a
store that cannot record fails the run instead of being logged and ignored:

* ``record_run_start(run)``, ``record_run_finish(run, summary)`` and, optionally, the
  per-task ``record_transition(task, old, new, run)`` and ``commit_result(task, attempt,
  run)``;
* ``summary(run_id) -> dict | None``: a recorded run, as :class:`taskloom.RunSummary` fields;
* ``outcomes(run_id) -> {task: (state, result stored, result, error, error type)}``;
* ``cache_get(key, now) -> (hit, value)`` and ``cache_put(key, task, value, expires)``;
* ``schedule_state()``: a :class:`taskloom.api.scheduling.ScheduleState`;
* ``flush()`` and ``close()``.

The ``history`` component (:class:`SqliteHistory`) tells the CLI which store records its runs
and where: ``taskloom runs``, ``show`` and ``resume`` read them through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskloom import TaskloomError, hookimpl
from taskloom.api.history import HistoryProvider, RunHistoryReader
from taskloom_std.stores.errors import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    UnknownRunError,
)
from taskloom_std.stores.memory import MemoryStore
from taskloom_std.stores.sqlite import SqliteStore, create_sqlite_store

__all__ = [
    "MemoryStore",
    "SqliteHistory",
    "SqliteStore",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
    "UnknownRunError",
]


#: Folders :meth:`SqliteHistory.below` does not look into, and how many it looks at most.
_NOT_PROJECTS = frozenset({"node_modules", "__pycache__", "site-packages", "venv", "build",
                           "dist"})
_MAX_FOLDERS = 2000


class SqliteHistory:
    """The CLI's history: ``sqlite`` at ``.taskloom/taskloom.db`` beside the configuration
    file (a relative ``path`` option is read from that folder)."""

    store = "sqlite"
    db = Path(".taskloom") / "taskloom.db"

    def record_options(self, options: Mapping[str, Any], base_dir: Path,
                       config_path: Path | None, location: str | None) -> dict[str, Any]:
        out = dict(options)
        path = Path(location or out.get("path", self.db))
        out["path"] = str(path if path.is_absolute() else base_dir / path)
        if config_path is not None:
            out.setdefault("config_path", str(config_path))
        return out

    def locate(self, given: str | None, config_file: str | None,
               options: Mapping[str, Any] | None = None) -> str:
        if given:  # relative to the current folder, like every path on the command line
            return str(Path(given).absolute())
        if config_file is not None:
            path = Path((options or {}).get("path") or self.db)
            return str(path if path.is_absolute() else Path(config_file).resolve().parent / path)
        here = Path.cwd().resolve()
        found = next((f / self.db for f in (here, *here.parents) if (f / self.db).is_file()),
                     here / self.db)
        return str(found)

    def below(self, folder: Path, depth: int = 3) -> list[Path]:
        found: list[Path] = []
        level = [folder]
        visited = 0
        for _ in range(depth):
            deeper = []
            for parent in level:
                try:
                    children = sorted(p for p in parent.iterdir() if p.is_dir())
                except OSError:
                    continue
                for child in children:
                    if child.name.startswith(".") or child.name in _NOT_PROJECTS:
                        continue
                    visited += 1
                    if (child / self.db).is_file():
                        found.append(child / self.db)
                    deeper.append(child)
                if visited > _MAX_FOLDERS:  # a hint is not worth a slow command
                    return found
            level = deeper
        return found

    def upgrade(self, location: str) -> tuple[str, int | None, int]:
        """``taskloom db upgrade``: migrate the database file at ``location`` (as opening it
        for writing does); a file newer than this taskloom is refused untouched."""
        if not Path(location).is_file():
            raise TaskloomError(f"no run history at {location} "
                                "(runs are recorded by 'taskloom run')")
        before = _file_version(Path(location))
        create_sqlite_store(path=location).close()
        return location, (before or None), _file_version(Path(location))

    def open(self, location: str, read_only: bool = True) -> RunHistoryReader:
        if not Path(location).is_file():
            raise TaskloomError(f"no run history at {location} "
                                "(runs are recorded by 'taskloom run')")
        return create_sqlite_store(path=location, read_only=read_only)


def _file_version(path: Path) -> int:
    """The schema version of the SQLite file at ``path`` (0: no schema), read without
    writing; a file that is not a readable database is left for the store to refuse."""
    import sqlite3
    import urllib.parse

    from taskloom_std.stores.schema import read_version

    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro",
                               uri=True, timeout=2.0)
    except sqlite3.Error:
        return 0
    try:
        return int(read_version(conn)[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def _history() -> HistoryProvider:
    return SqliteHistory()  # mypy holds SqliteHistory to the protocol the CLI reads


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("store", "memory", MemoryStore)
    registry.add("store", "sqlite", create_sqlite_store)
    registry.add("history", "sqlite", _history)
