"""Recording a run: its summary, what the store is told at start and finish (a store that
cannot record fails the run), and the recorded outcomes a resume starts from."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from taskloom.kernel.states import TaskState
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.run import Run

log = logging.getLogger("taskloom.engine")
COMPLETED = TaskState.COMPLETED
#: What can start a run: the CLI (``manual``), a scheduled fire, a resume, a program.
TRIGGERS = frozenset({"manual", "schedule", "resume", "api"})


@dataclass
class RunSummary:
    """The outcome of a run."""

    id: str
    name: str | None
    status: str
    counts: dict[str, int]
    results: dict[str, Any]
    errors: dict[str, str]
    started_at: datetime | None
    finished_at: datetime | None
    duration: float
    tasks: list[Task] = field(default_factory=list, repr=False)
    #: Why the store could not record this run (the run then counts as failed).
    store_error: str | None = None
    #: What started the run: ``manual``, ``schedule``, ``resume`` or ``api`` (None: unknown).
    trigger: str | None = None
    #: The run this one continues (a resume, a child run), or None.
    parent_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class ResultsView(Mapping[str, Any]):
    """Read-only mapping of completed task names to results."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: dict[str, Task]) -> None:
        self._tasks = tasks

    def __getitem__(self, name: str) -> Any:
        t = self._tasks[name]
        if t._status is not COMPLETED:
            raise KeyError(name)
        return t.result

    def __iter__(self) -> Iterator[str]:
        return (n for n, t in list(self._tasks.items()) if t._status is COMPLETED)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def summarise(run: Run) -> RunSummary:
    # Counted by member, named once: an enum's ``.value`` is a slow descriptor.
    counts = {s.value: c for s, c in Counter(t._status for t in run.tasks.values()).items()}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, t in run.tasks.items():
        if t._status is COMPLETED:
            results[name] = t.result
        elif t.error is not None:
            errors[name] = t.error
    if run.store_error is not None:
        status = "failed"
    elif run._cancelling or counts.get("failed") or counts.get("cancelled"):
        status = "interrupted" if run.interrupted else (
            "cancelled" if run._cancelling else "failed")
    elif run._open:
        status = "running"
    else:
        status = "completed"
    run.finished_at = datetime.now(timezone.utc)
    return RunSummary(
        id=run.id, name=run.name, status=status, counts=counts, results=results,
        errors=errors, started_at=run.started_at, finished_at=run.finished_at,
        duration=(time.monotonic() - run._t0) if run._started else 0.0,
        tasks=list(run.tasks.values()), trigger=run.trigger, parent_id=run.parent_id,
    )


def record_start(run: Run) -> None:
    if run._store is not None:
        try:
            run._store.record_run_start(run)
        except Exception as exc:
            store_failed(run, exc)


def record_finish(run: Run, summary: RunSummary) -> None:
    if run._store is not None:
        try:
            run._store.record_run_finish(run, summary)
        except Exception as exc:
            store_failed(run, exc)
        if run.store_error is not None:
            summary.status = "failed"
            summary.store_error = run.store_error


def store_failed(run: Run, exc: BaseException) -> None:
    """The store could not record: the run fails (the first cause is kept)."""
    from taskloom.kernel.store import store_failure

    message = store_failure(run._store, exc)
    if run.store_error is None:
        log.error("run %s: %s", run.id, message)
        run.store_error = message


def recorded_outcomes(
    store: Any, run_id: str, retry_failed: bool
) -> tuple[dict[str, Any], dict[str, tuple[str, str | None]]]:
    """What a resume restores from the store: ``(results of completed tasks, (error, error
    type) of failed ones)``; failed tasks run again when ``retry_failed``."""
    restored: dict[str, Any] = {}
    failed: dict[str, tuple[str, str | None]] = {}
    for task_name, (state, stored, result, error, error_type) in store.outcomes(run_id).items():
        if state == "completed" and stored:
            restored[task_name] = result
        elif state == "failed" and not retry_failed:
            failed[task_name] = (error or "failed", error_type)
    return restored, failed
