"""The scheduler: jobs in a heap by next fire time, fired through an engine.

This module starts with the durable-state protocol the stores implement.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScheduleState(Protocol):
    """Where a scheduler keeps each job's progress, so a restart neither loses nor doubles a run.

    ``state`` is a small JSON-able dict (``next_fire_time`` as epoch seconds,
    ``last_fire_time``, ``paused``, ...); the scheduler owns its keys.

    :meth:`claim` is the one operation that must be atomic across processes: two schedulers
    sharing one database both try to claim a due run, and only the first one wins and fires.
    """

    def load(self, job_id: str) -> dict[str, Any] | None:
        """The saved state of ``job_id``, or None if it has none."""

    def save(self, job_id: str, state: dict[str, Any]) -> None:
        """Replace the saved state of ``job_id``."""

    def claim(self, job_id: str, fire_time: float, owner: str) -> bool:
        """Claim the run of ``job_id`` due at ``fire_time`` (epoch seconds) for ``owner``.

        True exactly once per ``(job_id, fire_time)`` across every scheduler sharing the
        state; every later claim of the same run returns False, whoever asks.
        """


class MemoryScheduleState:
    """:class:`ScheduleState` in memory: shared by schedulers of one process, lost on exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, Any]] = {}
        self._claims: dict[tuple[str, float], str] = {}

    def load(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            state = self._states.get(job_id)
            return None if state is None else dict(state)

    def save(self, job_id: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._states[job_id] = dict(state)

    def claim(self, job_id: str, fire_time: float, owner: str) -> bool:
        with self._lock:
            key = (job_id, fire_time)
            if key in self._claims:
                return False
            self._claims[key] = owner
            return True
