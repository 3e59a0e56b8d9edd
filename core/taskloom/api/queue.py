"""TaskQueue: the documented stand-alone queue of tasks, ordered by a queue strategy plugin.

``dequeue`` hands out the best task (by the strategy) whose dependencies have completed.
Dependencies are tasks of this queue, by name: queued ones and ones dequeued earlier. A task
whose dependency is not yet ``completed`` is held aside, off the strategy, and goes back into
it once that dependency has completed, so a blocked task costs nothing on later dequeues.
Dependencies on names this queue never saw do not block. The queue never changes a task's
state: whoever runs a dequeued task (an engine run, a ``TaskManager``) moves it along.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from taskloom.kernel.clock import Clock
from taskloom.kernel.errors import DuplicateTaskError, QueueFullError, TaskNotFoundError
from taskloom.kernel.pluginmanager import PluginSet, load_plugins
from taskloom.kernel.states import TaskState
from taskloom.kernel.task import Task, validate_priority

_COMPLETED = TaskState.COMPLETED
# How often a blocked ``dequeue(timeout=...)`` looks again when it cannot be told: when
# held tasks wait on a dependency's state, or when time is an injected clock.
_POLL = 0.05

_default_plugins: PluginSet | None = None
_default_lock = threading.Lock()


def default_plugins() -> PluginSet:
    """The plugin set shared by every TaskQueue built without one, and asked for the scheduler
    class and plugins' errors (``from taskloom import TaskScheduler``); loaded on first use."""
    global _default_plugins
    if _default_plugins is None:
        with _default_lock:
            if _default_plugins is None:
                _default_plugins = load_plugins()
    return _default_plugins


class TaskQueue:
    """A thread-safe queue of tasks in the order of a queue strategy.

    ``queue_type`` names a strategy (``priority``, ``fifo``, ``lifo``, ``fair``,
    ``deadline``, or one a plugin registers); an unknown name raises
    :class:`~taskloom.UnknownComponentError` listing the registered ones. ``max_size`` bounds
    the number of queued tasks (:class:`~taskloom.QueueFullError` beyond it). ``plugins``
    supplies the strategies (default: one plugin set shared by all queues); ``clock`` is the
    time source for ``dequeue(timeout=...)``.
    """

    def __init__(
        self,
        queue_type: str = "priority",
        max_size: int | None = None,
        *,
        plugins: PluginSet | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
        ):
            raise ValueError(f"max_size must be a positive integer or None, got {max_size!r}")
        registry = (plugins or default_plugins()).registry
        self.queue_type = queue_type
        self.max_size = max_size
        self._strategy: Any = registry.create("queue", queue_type)
        self._reorder: Callable[[Task, int], None] | None = getattr(
            self._strategy, "reorder", None
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._clock = clock
        self._monotonic: Callable[[], float] = clock.monotonic if clock else time.monotonic
        self._queued: dict[str, Task] = {}  # name -> task, in the strategy or held
        self._known: dict[str, Task] = {}  # name -> task, queued or dequeued
        self._by_id: dict[str, Task] = {}  # queued tasks whose id existed when found
        self._held: set[str] = set()  # queued but off the strategy: a dependency is not done
        self._after: dict[str, list[Task]] = {}  # held until this queued task is dequeued
        self._watch: dict[str, list[Task]] = {}  # held until this dequeued task completes
        self._sleepers = 0

    # -- the documented API -------------------------------------------------------------------
    def enqueue(self, task: Task) -> None:
        """Queue ``task``. A task of the same name already queued is a DuplicateTaskError."""
        if not isinstance(task, Task):
            raise TypeError(f"TaskQueue holds tasks, got {task!r}")
        with self._lock:
            name = task.name
            queued = self._queued
            if name in queued:
                raise DuplicateTaskError(name)
            if self.max_size is not None and len(queued) >= self.max_size:
                raise QueueFullError(
                    f"queue is full ({self.max_size} tasks); cannot enqueue task {name!r}"
                )
            queued[name] = task
            self._known[name] = task
            if task._id is not None:
                self._by_id[task._id] = task
            self._strategy.push(task)
            if self._sleepers:
                self._changed.notify()

    def dequeue(self, timeout: float | None = 0.0) -> Task | None:
        """Remove and return the best task whose dependencies have completed.

        ``timeout=0`` (default): None at once when no task is eligible. A positive
        ``timeout`` waits up to that many seconds for one; ``None`` waits as long as it takes.
        """
        if timeout == 0:
            with self._lock:
                return self._take()
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        with self._lock:
            task = self._take()
            if task is not None:
                return task
            return self._wait_and_take(timeout)

    def peek(self) -> Task | None:
        """The task ``dequeue()`` would return now, left in the queue; None if none."""
        with self._lock:
            if self._watch:
                self._release_completed()
            strategy = self._strategy
            peek = getattr(strategy, "peek", None)
            if peek is None:
                raise TypeError(f"queue strategy {self.queue_type!r} cannot peek")
            while strategy:
                task: Task = peek()
                if task.dependencies:
                    dep = self._unmet(task)
                    if dep is not None:
                        strategy.pop()
                        self._hold(task, dep)
                        continue
                return task
            return None

    def get_queue_size(self) -> int:
        """Tasks queued, eligible or waiting on a dependency."""
        return len(self._queued)

    def __len__(self) -> int:
        return len(self._queued)

    def clear(self) -> None:
        """Empty the queue and forget every task it has seen (dequeued ones too)."""
        with self._lock:
            self._strategy.clear()
            self._queued.clear()
            self._known.clear()
            self._by_id.clear()
            self._held.clear()
            self._after.clear()
            self._watch.clear()

    def get_tasks_by_status(self, status: str | TaskState) -> list[Task]:
        """Tasks this queue knows (queued or dequeued) in that state, in order of arrival."""
        try:
            state = TaskState(status)
        except ValueError:
            names = ", ".join(s.value for s in TaskState)
            raise ValueError(f"unknown task status {status!r}; one of {names}") from None
        with self._lock:
            return [t for t in self._known.values() if t._status is state]

    def reorder(self, task_id: str | Task, new_priority: int) -> None:
        """Give a queued task (by id, name, or the task) a new priority, 1 to 10."""
        with self._lock:
            task = self._find(task_id)
            priority = validate_priority(task.name, new_priority)
            reorder = self._reorder
            if reorder is not None and task.name not in self._held:
                reorder(task, priority)
            task.priority = priority

    def __repr__(self) -> str:
        return f"<TaskQueue {self.queue_type} {len(self._queued)} queued>"

    # -- internals (called with the lock held) ---------------------------------------------------
    def _take(self) -> Task | None:
        if self._watch:
            self._release_completed()
        pop = self._strategy.pop
        while True:
            try:
                task: Task = pop()
            except IndexError:  # empty: cheaper than asking first on every dequeue
                return None
            if task.dependencies:
                dep = self._unmet(task)
                if dep is not None:
                    self._hold(task, dep)
                    continue
            name = task.name
            del self._queued[name]
            if task._id is not None:
                self._by_id.pop(task._id, None)
            if self._after:
                waiting = self._after.pop(name, None)
                if waiting:
                    self._watch.setdefault(name, []).extend(waiting)
            return task

    def _wait_and_take(self, timeout: float | None) -> Task | None:
        monotonic = self._monotonic
        deadline = None if timeout is None else monotonic() + timeout
        self._sleepers += 1
        try:
            while True:
                # Enqueues notify; a dependency completing or an injected clock moving do not.
                must_poll = self._clock is not None or bool(self._watch)
                if deadline is None:
                    wait = _POLL if must_poll else None
                else:
                    remaining = deadline - monotonic()
                    if remaining <= 0:
                        return None
                    wait = min(remaining, _POLL) if must_poll else remaining
                self._changed.wait(wait)
                task = self._take()
                if task is not None:
                    if self._strategy and self._sleepers > 1:
                        self._changed.notify()
                    return task
        finally:
            self._sleepers -= 1

    def _unmet(self, task: Task) -> str | None:
        """The first dependency of ``task`` this queue knows that has not completed."""
        known = self._known
        for dep in task.dependencies:
            up = known.get(dep)
            if up is not None and up is not task and up._status is not _COMPLETED:
                return dep
        return None

    def _hold(self, task: Task, dep: str) -> None:
        self._held.add(task.name)
        if dep in self._queued:
            self._after.setdefault(dep, []).append(task)
        else:
            self._watch.setdefault(dep, []).append(task)

    def _release_completed(self) -> None:
        """Put tasks held on dependencies that have now completed back into the strategy."""
        known, watch = self._known, self._watch
        done = [d for d in watch if (up := known.get(d)) is None or up._status is _COMPLETED]
        for dep in done:
            for task in watch.pop(dep):
                if self._queued.get(task.name) is not task:
                    continue
                nxt = self._unmet(task)
                if nxt is None:
                    self._held.discard(task.name)
                    self._strategy.push(task)
                else:
                    self._hold(task, nxt)

    def _find(self, task_id: str | Task) -> Task:
        if isinstance(task_id, Task):
            if self._queued.get(task_id.name) is task_id:
                return task_id
            raise TaskNotFoundError(task_id.name)
        task = self._by_id.get(task_id) or self._queued.get(task_id)
        if task is not None:
            return task
        # Ids are made on first use, possibly after the task was queued: look once, remember.
        for queued in self._queued.values():
            if queued._id is not None and queued._id not in self._by_id:
                self._by_id[queued._id] = queued
        task = self._by_id.get(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task
