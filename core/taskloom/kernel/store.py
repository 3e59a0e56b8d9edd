"""What the engine asks of its store. The engine calls the store directly, never as a plugin.

A store is not an observer: an observer's failure is logged and ignored, while a store that
cannot record is a failed run. So the engine does not register the store on its plugin set;
it calls the methods below itself, and an exception from a recording method fails the run
(``RunSummary.status == "failed"`` with ``RunSummary.store_error`` naming the cause).

Two per-task methods are optional (a store that records only whole runs leaves them out, and
the engine's per-task path then costs nothing):

* ``record_transition(task, old, new, run)``: every state change; must only queue (it runs
  under the run's lock) and should not raise.
* ``commit_result(task, attempt, run)``: called after a successful attempt and before its
  task is marked completed; a store that promises durability commits the result here and
  raises when it cannot. The task is then not completed: it is cancelled with the store's
  error, the run is cancelled, and a resume runs it again.
* ``claim_run(run_id, workflow, *, on_conflict, max_active_runs, on_limit) -> release``: run
  once across processes; waits or raises while the id (or the workflow's limit) is held.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunStore(Protocol):
    """The store component's contract with the engine (kind ``store`` in the registry)."""

    name: str

    def record_run_start(self, run: Any) -> None:
        """A run starts (or a recorded one is resumed): ``run.id``, ``run.name``, what
        started it (``run.trigger``: manual, schedule, resume, api) and ``run.parent_id``."""

    def record_run_finish(self, run: Any, summary: Any) -> None:
        """A run ended. Raise if anything of this run could not be recorded."""

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """A recorded run, as :class:`taskloom.RunSummary` fields (no ``tasks``), or None."""

    def outcomes(self, run_id: str) -> dict[str, tuple[str, bool, Any, str | None, str | None]]:
        """``{task: (state, result stored, result, error, error type)}`` of a recorded run."""

    def cache_get(self, key: str, now: float) -> tuple[bool, Any]:
        """``(hit, value)`` from the result cache."""

    def cache_put(self, key: str, task: str, value: Any, expires: float) -> None:
        """Keep a result in the cache until ``expires`` (wall-clock seconds)."""

    def flush(self) -> None:
        """Wait until everything recorded so far is written; raise if writing failed."""

    def close(self) -> None:
        """Write what is queued and release the store."""


def store_failure(store: Any, exc: BaseException) -> str:
    """The message of a failed store call, naming the store unless the error already does."""
    name = getattr(store, "name", type(store).__name__)
    text = str(exc) or type(exc).__name__
    return text if f"store {name!r}" in text else f"store {name!r}: {text}"
