"""Task states and the one table of legal transitions."""

from __future__ import annotations

import enum

from taskloom.kernel.errors import InvalidTransition


class TaskState(str, enum.Enum):
    """A task's lifecycle state. A ``str`` too, so ``task.status == "completed"`` holds."""

    PENDING = "pending"
    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True for states a task leaves only by an explicit ``retry()``."""
        return self in TERMINAL


P, W, RD, RN = TaskState.PENDING, TaskState.WAITING, TaskState.READY, TaskState.RUNNING
C, F, RT = TaskState.COMPLETED, TaskState.FAILED, TaskState.RETRYING
X, S = TaskState.CANCELLED, TaskState.SKIPPED

#: Every legal transition. Anything not listed raises :class:`InvalidTransition`.
#: ``waiting -> failed`` is an upstream failure; ``failed -> retrying`` an explicit retry();
#: ``completed/cancelled/skipped/failed/retrying -> pending``: a finished task joins a new run;
#: ``pending -> completed/failed``: a resumed run restores a recorded outcome without an attempt.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    P: frozenset({W, RD, X, S, F, C}),
    W: frozenset({RD, X, S, F}),
    RD: frozenset({RN, X}),
    RN: frozenset({C, F, X, RT}),
    RT: frozenset({RN, X, P}),
    F: frozenset({RT, P}),
    C: frozenset({P}),
    X: frozenset({P}),
    S: frozenset({P}),
}

TERMINAL: frozenset[TaskState] = frozenset({C, F, X, S})


def check_transition(task_name: str, old: TaskState, new: TaskState) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is legal."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(task_name, old, new)
