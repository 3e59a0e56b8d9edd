"""What every queued store records the same way, whatever database it writes to: a run's
transitions, results, errors, logs and cache entries go into queues that the store's writer
thread commits in rounds. :class:`QueuedRecorder` is that part; :class:`SafeRecorder` adds the
``safe`` durability's commit barrier. The SQLite store and the PostgreSQL store (a contrib
distribution) both build on them, so the two record identically."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from taskloom import TaskState
from taskloom_std.policies.cache import CACHE_HIT
from taskloom_std.stores.errors import StoreError

_COMPLETED = TaskState.COMPLETED
_ERRORISH = frozenset({TaskState.FAILED, TaskState.RETRYING, TaskState.CANCELLED})
#: Most records of one kind a writer round commits.
CHUNK = 20_000


class QueuedRecorder:
    """Recording by queueing: cheap for the engine's workers (an append each).

    The store sets up ``_events_append``, ``_results_append``, ``_errors_append``, ``_ops``,
    ``_wake``, ``_remember``, ``read_only``, ``path`` and ``config_path``, and commits the
    queues in its writer thread.
    """

    #: The store's registry name, for messages.
    store_name: ClassVar[str] = "store"

    read_only: bool
    path: Any
    config_path: Any
    _ops: deque[tuple[Any, ...]]
    _wake: Any
    _events_append: Any
    _results_append: Any
    _errors_append: Any
    _remember: Callable[[str, float, Any], None]  # keeps a recent cache entry in memory

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.store_name!r}: {self.path} is open read-only")

    def record_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        t = time.time()
        name = task.name
        self._events_append((run.id, name, new, t))
        if new is _COMPLETED:
            self._results_append(
                (run.id, name, task.result, t, task.stash.get(CACHE_HIT, False))
            )
        elif new in _ERRORISH:
            self._errors_append((
                run.id, name, new, t, task.attempts, task.error_type, task.error,
                task.error_traceback, task.exception,
            ))

    def record_logs(self, run_id: str, task: str, attempt: int, text: str) -> None:
        """Keep what an attempt printed and logged (called by the ``capture`` plugin)."""
        self._ops.append(("logs", run_id, task, attempt, time.time(), text))
        self._wake.set()

    def cache_put(self, key: str, task: str, value: Any, expires: float) -> None:
        self._writable()
        self._remember(key, expires, value)
        self._ops.append(("cache_put", key, task, value, time.time(), expires))

    @staticmethod
    def _drain(q: deque[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        pop = q.popleft
        return [pop() for _ in range(min(len(q), CHUNK))]

    def _config_hash(self, tasks: list[tuple[Any, ...]]) -> str:
        h = hashlib.sha256()
        if self.config_path is not None:
            with contextlib.suppress(OSError):
                h.update(Path(self.config_path).read_bytes())
                return h.hexdigest()[:16]
        for name, deps, config, fn in sorted(tasks, key=lambda x: x[0]):
            where = (
                "" if fn is None
                else f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
            )
            h.update(repr((name, deps, sorted(config.items(), key=str), where)).encode())
        return h.hexdigest()[:16]


class SafeRecorder(QueuedRecorder):
    """``durability = "safe"``: a result is committed before its task completes."""

    flush: Callable[[], None]  # the store's: wait until its writer committed the queues

    def commit_result(self, task: Any, attempt: Any, run: Any) -> None:
        self._results_append((
            run.id, task.name, attempt.value, time.time(), task.stash.get(CACHE_HIT, False)
        ))
        self.flush()

    def record_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        t = time.time()
        self._events_append((run.id, task.name, new, t))
        if new is _COMPLETED:
            if task.error is not None:  # completed by a fallback: no successful attempt
                self._results_append(
                    (run.id, task.name, task.result, t, task.stash.get(CACHE_HIT, False))
                )
        elif new in _ERRORISH:
            self._errors_append((
                run.id, task.name, new, t, task.attempts, task.error_type, task.error,
                task.error_traceback, task.exception,
            ))
