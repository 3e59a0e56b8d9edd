"""What the engine needs from a per-tag limiter; the implementation is a plugin component.

A run with ``limits`` or ``rate_limits`` creates the component of kind ``limiter`` named
``tags`` (the standard ``limits`` plugin registers it) with ``limits``, ``rate_limits`` and
``clock`` keyword arguments. Every method is called under the run's lock.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from taskloom.kernel.task import Task


class Limiter(Protocol):
    """Admits tasks to start while their tags are under their limits."""

    #: Tasks a freed slot woke: the engine serves them before its queue.
    woken: deque[Task]

    def admit(self, task: Task) -> bool | float:
        """True: start it (counters taken). False: parked until a slot of its tag frees.
        A number: the seconds until a rate limit allows it (offer it again then)."""
        ...

    def release(self, task: Task) -> None:
        """An admitted attempt of ``task`` finished: free its slots."""
        ...

    def discard(self, task: Task) -> None:
        """A woken or parked task is no longer runnable: pass on what it held."""
        ...
