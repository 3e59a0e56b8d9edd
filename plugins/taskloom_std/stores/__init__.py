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
"""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl
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
    "SqliteStore",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
    "UnknownRunError",
]


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("store", "memory", MemoryStore)
    registry.add("store", "sqlite", create_sqlite_store)
