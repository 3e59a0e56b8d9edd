"""Performance statistics and debug reports of tasks (the ``stats`` plugin).

Every attempt that ends (``taskloom_attempt_finish``, one call per attempt: the only hook this
plugin implements) updates the figures of its task's name in the plugin set's collector. The
collector is the plugin's component of kind ``stats``, which is how the core's
``Task.get_performance_stats()``, ``Task.get_debug_report()`` and
``TaskManager.get_performance_stats()`` find it without importing this module.

``get_performance_stats()`` gives ``execution_count`` (attempts, failed ones included),
``average_duration``, ``min_duration``, ``max_duration``, ``total_duration`` (seconds, every
attempt), ``error_rate`` (failed attempts / attempts, in [0, 1]) and ``last_execution``
(POSIX time the last attempt started); ``{"status": "no_executions"}`` before any attempt.
Attempts that were cancelled or abandoned after a timeout never report, so they are not
counted.

The figures are kept for at most ``[taskloom.stats] max_names`` task names (default 10,000):
past that, the names first seen longest ago are dropped (their figures start again at their
next attempt), so a long-lived process running ever new names, or one huge workflow, keeps
bounded memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from taskloom import ConfigError, StashKey, hookimpl

#: ``Run.stash``: the collector of the run's plugin set.
RUN_KEY: StashKey[StatsCollector] = StashKey()
#: Failed attempts kept per task name for its debug report.
KEEP_FAILURES = 10

NO_EXECUTIONS = {"status": "no_executions"}
#: Task names whose figures are kept (``[taskloom.stats] max_names``).
MAX_NAMES = 10_000


class _TaskStats:
    __slots__ = ("count", "errors", "failures", "last", "max", "min", "total")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.total = 0.0
        self.min = float("inf")
        self.max = 0.0
        #: The last attempt: (name, number, started, duration, error message, run id).
        self.last: tuple[str, int, float, float, str | None, str | None] = (
            "", 0, 0.0, 0.0, None, None)
        # (attempt, started, duration, error, run id) of recent failures, made on the first
        self.failures: list[tuple[int, float, float, str, str | None]] | None = None


def _summary(count: int, errors: int, total: float, low: float, high: float,
             last: float) -> dict[str, Any]:
    return {
        "execution_count": count,
        "average_duration": total / count,
        "min_duration": low,
        "max_duration": high,
        "error_rate": errors / count,
        "total_duration": total,
        "last_execution": last,
    }


def _message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


class StatsCollector:
    """Per task name: attempts, failures and durations. Thread-safe.

    Recording is on the engine's per-attempt path, so it only appends a tuple to a deque
    (atomic, no lock for the workers to contend on); readers fold what is pending into the
    per-name figures under the lock. Once ``FOLD_AT`` records are pending a thread of the
    collector's own folds them in chunks, so memory stays bounded in a long-lived manager
    and no worker ever waits for a fold (folding 50,000 records takes tens of ms).
    """

    FOLD_AT = 10_000
    #: Records folded per hold of the lock by the folding thread (a reader waits at most that).
    CHUNK = 2_000

    def __init__(self, max_names: int = MAX_NAMES) -> None:
        self.max_names = max_names
        self._lock = threading.Lock()
        self._folder = threading.Lock()  # held while a folding thread runs: at most one
        self._tasks: dict[str, _TaskStats] = {}
        self.pending: deque[tuple[str, int, float, float, BaseException | None,
                                   str | None]] = deque()

    def record(self, name: str, number: int, started: float, duration: float,
               error: BaseException | None, run_id: str | None = None) -> None:
        """One attempt of task ``name`` ended; ``started`` is its POSIX start time."""
        pending = self.pending
        pending.append((name, number, started, duration, error, run_id))
        if len(pending) >= self.FOLD_AT:
            self.fold_behind()

    def fold_behind(self) -> None:
        """Start a thread folding the pending records, unless one runs already."""
        if self._folder.acquire(blocking=False):
            try:
                threading.Thread(target=self._fold_behind, name="taskloom-stats-fold",
                                 daemon=True).start()
            except BaseException:
                self._folder.release()
                raise

    def _fold_behind(self) -> None:
        try:
            while self.pending:
                self._fold(self.CHUNK)
                time.sleep(0)  # let the workers run between chunks
        finally:
            self._folder.release()

    def _fold(self, limit: int | None = None) -> None:
        """Fold pending records (at most ``limit``) into the per-name figures."""
        pending, tasks = self.pending, self._tasks
        with self._lock:
            # popleft, never a swap: a record appended meanwhile waits for the next fold.
            for _ in range(len(pending) if limit is None else min(limit, len(pending))):
                record = pending.popleft()
                name, duration, error = record[0], record[3], record[4]
                st = tasks.get(name)
                if st is None:
                    if len(tasks) >= self.max_names:
                        del tasks[next(iter(tasks))]  # the name first seen longest ago
                    st = tasks[name] = _TaskStats()
                st.count += 1
                st.total += duration
                if duration < st.min:
                    st.min = duration
                if duration > st.max:
                    st.max = duration
                st.last = record  # type: ignore[assignment]  # its error is None
                if error is not None:
                    message = _message(error)  # kept, not the error: its traceback holds frames
                    st.last = (name, record[1], record[2], duration, message, record[5])
                    st.errors += 1
                    failures = st.failures
                    if failures is None:
                        failures = st.failures = []
                    failures.append((record[1], record[2], duration, message, record[5]))
                    if len(failures) > KEEP_FAILURES:
                        del failures[0]

    def performance(self, task_name: str | None = None) -> dict[str, Any]:
        """The documented statistics of one task name, or of every task together."""
        self._fold()
        with self._lock:
            if task_name is not None:
                st = self._tasks.get(task_name)
                if st is None or not st.count:
                    return dict(NO_EXECUTIONS)
                return _summary(st.count, st.errors, st.total, st.min, st.max, st.last[2])
            every = list(self._tasks.values())
            if not every:
                return dict(NO_EXECUTIONS)
            return _summary(
                sum(s.count for s in every),
                sum(s.errors for s in every),
                sum(s.total for s in every),
                min(s.min for s in every),
                max(s.max for s in every),
                max(s.last[2] for s in every),
            )

    def debug_info(self, task_name: str) -> list[str]:
        """Readable lines about the task's recent attempts, oldest first."""
        self._fold()
        with self._lock:
            st = self._tasks.get(task_name)
            if st is None:
                return []
            failures = list(st.failures or ())
            last = st.last[1:]
            count, errors = st.count, st.errors
        lines = [f"{count} attempt(s), {errors} failed"]
        for number, started, duration, message, run_id in failures:
            if (number, started, run_id) == (last[0], last[1], last[4]):
                continue
            lines.append(f"attempt {number} (run {run_id}) started {_when(started)}: "
                         f"failed after {duration:.6f}s: {message}")
        number, started, duration, last_error, run_id = last
        outcome = f"completed in {duration:.6f}s" if last_error is None else (
            f"failed after {duration:.6f}s: {last_error}"
        )
        lines.append(f"attempt {number} (run {run_id}) started {_when(started)}: {outcome}")
        return lines

    def debug_report(self, task: Any) -> dict[str, Any]:
        """The documented debug report: ``task_name``, ``debug_info``, ``config``, ``status``."""
        info = self.debug_info(task.name)
        if task.error is not None and task.status.value in ("failed", "cancelled"):
            info.append(f"final error: {task.error_type}: {task.error}")
        return {
            "task_name": task.name,
            "debug_info": info,
            "config": dict(task.config),
            "status": task.status.value,
        }


@hookimpl
def taskloom_register(registry: Any) -> None:
    from taskloom.kernel.schema import Key

    collector = StatsCollector()
    registry.add("stats", "attempts", lambda: collector)
    registry.add_config_section("stats", {
        "max_names": Key(("integer",), f"task names whose figures are kept (default "
                         f"{MAX_NAMES:,}); the first seen are dropped past it", minimum=1),
    })


def max_names(config: Mapping[str, Any]) -> int:
    """``[taskloom.stats] max_names``, checked."""
    section = config.get("stats") or {}
    value = section.get("max_names", MAX_NAMES) if isinstance(section, Mapping) else section
    if type(value) is not int or value < 1:
        raise ConfigError(f"stats.max_names must be an integer >= 1, got {value!r}")
    return value


@hookimpl
def taskloom_configure(config: Any) -> None:
    max_names(config)  # a bad value is a configuration error, before any run


@hookimpl
def taskloom_attempt_finish(
    task: Any, attempt: Any, error: BaseException | None, run: Any
) -> None:
    collector = run.stash.get(RUN_KEY, None)
    if collector is None:
        collector = run.stash[RUN_KEY] = run.plugins.registry.first("stats")
        collector.max_names = max_names(run.plugins.config)
    finished = attempt.finished
    duration = 0.0 if finished is None else finished - attempt.started
    pending = collector.pending  # record(), inlined: once per attempt
    pending.append((task.name, attempt.number, run.clock.time() - duration, duration, error,
                    run.id))
    if len(pending) >= collector.FOLD_AT:
        collector.fold_behind()
