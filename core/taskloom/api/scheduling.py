"""Scheduling as the core sees it: the schedule-state protocol stores implement, and the
scheduler component a plugin provides.

The scheduler itself (``TaskScheduler``: jobs, triggers, catch-up) is a plugin component of
kind ``scheduler``; the core only looks it up, as it does executors, so ``from taskloom
import TaskScheduler`` works without the core importing a plugin.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from taskloom.kernel.pluginmanager import PluginSet

#: The scheduler component ``TaskScheduler`` resolves to.
DEFAULT_SCHEDULER = "standard"


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
        state; every later claim of the same run returns False, whoever asks. A scheduler
        claims a job's runs in increasing ``fire_time`` (the trigger's time, before jitter),
        so an implementation may also refuse any claim at or before the job's latest one.
        """


class MemoryScheduleState:
    """:class:`ScheduleState` in memory: shared by schedulers of one process, lost on exit.

    A job's runs are claimed in time order, so only its latest claimed time is kept: a claim
    at or before it is refused (memory stays one entry per job however long it runs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, Any]] = {}
        self._claims: dict[str, float] = {}

    def load(self, job_id: str) -> dict[str, Any] | None:
        state = self._states.get(job_id)  # one dict read: atomic, no lock needed
        return None if state is None else dict(state)

    def save(self, job_id: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._states[job_id] = dict(state)

    def claim(self, job_id: str, fire_time: float, owner: str) -> bool:
        with self._lock:
            last = self._claims.get(job_id)
            if last is not None and fire_time <= last:
                return False
            self._claims[job_id] = fire_time
            return True


def scheduler_class(plugins: PluginSet | None = None, name: str = DEFAULT_SCHEDULER) -> Any:
    """The scheduler class registered as ``name`` (kind ``scheduler``) by an installed plugin.

    Without ``plugins``, the process's default plugin set (entry points) is asked.
    """
    if plugins is None:
        from taskloom.api.queue import default_plugins

        plugins = default_plugins()
    return plugins.registry.get("scheduler", name)
