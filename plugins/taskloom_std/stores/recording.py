"""What every queued store records the same way, whatever database it writes to: a run's
transitions, results, errors, logs and cache entries go into queues that the store's writer
thread commits in rounds. :class:`QueuedRecorder` is that part; :class:`SafeRecorder` adds the
``safe`` durability's commit barrier. The SQLite store and the PostgreSQL store (a contrib
distribution) both build on them, so the two record identically. :class:`FlatRecorder` and
:class:`SafeFlatRecorder` record the same things into flat lists instead (the SQLite store's
queues): no object per record survives until the writer takes it."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import operator
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from taskloom import TaskState
from taskloom_std.policies.cache import CACHE_HIT
from taskloom_std.stores.errors import StoreError
from taskloom_std.stores.schema import STATE_LETTER

_COMPLETED = TaskState.COMPLETED
_FAILED, _RETRYING, _CANCELLED = TaskState.FAILED, TaskState.RETRYING, TaskState.CANCELLED
_first, _second, _third, _fourth = map(operator.itemgetter, range(4))
_NAME, _FN, _CONFIG, _DEPS = map(operator.attrgetter, ("name", "fn", "config", "dependencies"))
#: Most records of one kind a writer round commits.
CHUNK = 20_000


def _where(fn: Any) -> str:
    """A body as the run's fingerprint names it."""
    if fn is None:
        return ""
    return f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"


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

    def record_transition(self, task: Any, old: Any, new: Any, run: Any,
                          _time: Callable[[], float] = time.time,
                          _letter: Callable[..., Any] = STATE_LETTER.get) -> None:
        # Runs under the run's lock for every state change: identity tests, not a set
        # lookup (an Enum member hashes in Python); the state queued as its letter.
        t = _time()
        self._events_append((run.id, task.name, _letter(id(new), new), t))
        if new is _COMPLETED:
            self._results_append(
                (run.id, task.name, task.result, t, task.stash_get(CACHE_HIT, False))
            )
        elif new is _FAILED or new is _RETRYING or new is _CANCELLED:
            self._errors_append((
                run.id, task.name, new, t, task.attempts, task.error_type, task.error,
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

    def _config_hash(self, tasks: Iterable[tuple[Any, ...]], *, ordered: bool = False) -> str:
        """The configuration file's hash, or (a run from Python) a fingerprint of its tasks'
        names, dependencies, configs and bodies. The writer thread computes it while the
        run goes on, under the interpreter lock: it is kept to C loops (columns by
        ``map``, one ``repr`` per column, bodies named once each). ``tasks``: ``(name,
        dependencies, config, body)`` tuples, in name order when ``ordered``."""
        if self.config_path is not None:
            with contextlib.suppress(OSError):
                return hashlib.sha256(Path(self.config_path).read_bytes()).hexdigest()[:16]
        rows = list(tasks) if ordered else sorted(tasks, key=_first)
        return _fingerprint(list(map(_first, rows)), list(map(_second, rows)),
                            list(map(_third, rows)), list(map(_fourth, rows)))

    def _tasks_hash(self, tasks: Iterable[Any]) -> str:
        """:meth:`_config_hash` of task objects (the same fingerprint), without a tuple per
        task."""
        if self.config_path is not None:
            return self._config_hash(())
        ordered = sorted(tasks, key=_NAME)
        return _fingerprint(list(map(_NAME, ordered)), list(map(_DEPS, ordered)),
                            list(map(_CONFIG, ordered)), list(map(_FN, ordered)))


def _fingerprint(names: list[str], deps: list[Any], configs: list[Any], fns: list[Any]) -> str:
    """A run's tasks in name order as a short hash (see :meth:`QueuedRecorder._config_hash`)."""
    try:
        places = {fn: _where(fn) for fn in set(fns)}
        wheres = list(map(places.__getitem__, fns))
    except TypeError:  # an unhashable callable
        wheres = list(map(_where, fns))
    # Each column as its strings' lengths and their concatenation (exact, and C loops
    # only: a repr per task or per dependency list would cost several times as much).
    digest = hashlib.sha256()
    for column in (names, list(itertools.chain.from_iterable(deps)), wheres):
        digest.update(array("q", map(len, column)).tobytes())
        digest.update("".join(column).encode("utf-8", "surrogatepass"))
    digest.update(array("q", map(len, deps)).tobytes())
    if any(configs):
        digest.update(repr([sorted(c.items(), key=str) if c else None for c in configs])
                      .encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


class SafeRecorder(QueuedRecorder):
    """``durability = "safe"``: a result is committed before its task completes."""

    flush: Callable[[], None]  # the store's: wait until its writer committed the queues

    def commit_result(self, task: Any, attempt: Any, run: Any) -> None:
        self._results_append((
            run.id, task.name, attempt.value, time.time(), task.stash_get(CACHE_HIT, False)
        ))
        self.flush()

    def record_transition(self, task: Any, old: Any, new: Any, run: Any,
                          _time: Callable[[], float] = time.time,
                          _letter: Callable[..., Any] = STATE_LETTER.get) -> None:
        t = _time()
        self._events_append((run.id, task.name, _letter(id(new), new), t))
        if new is _COMPLETED:
            if task.error is not None:  # completed by a fallback: no successful attempt
                self._results_append(
                    (run.id, task.name, task.result, t, task.stash_get(CACHE_HIT, False))
                )
        elif new is _FAILED or new is _RETRYING or new is _CANCELLED:
            self._errors_append((
                run.id, task.name, new, t, task.attempts, task.error_type, task.error,
                task.error_traceback, task.exception,
            ))


#: Items per record in a :class:`FlatRecorder`'s queues: a state change is
#: ``run id, task, state letter, time``; a result ``run id, task, value, time, cache hit``.
EVENT_FIELDS = 4
RESULT_FIELDS = 5


class FlatRecorder(QueuedRecorder):
    """:class:`QueuedRecorder` with the state changes and results queued in flat lists: each
    record is one ``list.extend`` of its fields (atomic under the interpreter lock, so a
    queue's length is always a whole number of records), and the writer takes them with two
    slices. A tuple per record that lives until the writer's round is what the garbage
    collector pays for: tens of thousands of them per round made the workers' collections
    several times as frequent and costlier than the writing itself.

    The store sets up ``_events_extend`` and ``_results_extend`` (the lists' ``extend``)
    besides what :class:`QueuedRecorder` needs.
    """

    _events_extend: Any
    _results_extend: Any

    def record_transition(self, task: Any, old: Any, new: Any, run: Any,
                          _time: Callable[[], float] = time.time,
                          _letter: Callable[..., Any] = STATE_LETTER.get) -> None:
        t = _time()
        self._events_extend((run.id, task.name, _letter(id(new), new), t))
        if new is _COMPLETED:
            self._results_extend(
                (run.id, task.name, task.result, t, task.stash_get(CACHE_HIT, False))
            )
        elif new is _FAILED or new is _RETRYING or new is _CANCELLED:
            self._errors_append((
                run.id, task.name, new, t, task.attempts, task.error_type, task.error,
                task.error_traceback, task.exception,
            ))

    @staticmethod
    def _take(q: list[Any], fields: int) -> list[Any]:
        """The first records of a flat queue (at most :data:`CHUNK`), removed from it.
        Records appended meanwhile go to the end, which the ``del`` does not touch."""
        n = min(len(q), CHUNK * fields)
        rows = q[:n]
        del q[:n]
        return rows


class SafeFlatRecorder(FlatRecorder):
    """``durability = "safe"`` on flat queues: a result is committed before its task
    completes (as :class:`SafeRecorder`)."""

    flush: Callable[[], None]  # the store's: wait until its writer committed the queues

    def commit_result(self, task: Any, attempt: Any, run: Any) -> None:
        self._results_extend((
            run.id, task.name, attempt.value, time.time(), task.stash_get(CACHE_HIT, False)
        ))
        self.flush()

    def record_transition(self, task: Any, old: Any, new: Any, run: Any,
                          _time: Callable[[], float] = time.time,
                          _letter: Callable[..., Any] = STATE_LETTER.get) -> None:
        t = _time()
        self._events_extend((run.id, task.name, _letter(id(new), new), t))
        if new is _COMPLETED:
            if task.error is not None:  # completed by a fallback: no successful attempt
                self._results_extend(
                    (run.id, task.name, task.result, t, task.stash_get(CACHE_HIT, False))
                )
        elif new is _FAILED or new is _RETRYING or new is _CANCELLED:
            self._errors_append((
                run.id, task.name, new, t, task.attempts, task.error_type, task.error,
                task.error_traceback, task.exception,
            ))
