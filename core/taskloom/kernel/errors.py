"""Every error taskloom raises; all importable from ``taskloom``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TaskloomError(Exception):
    """Base class of every taskloom error."""


class InvalidTransition(TaskloomError):
    """A task was asked to move between two states that are not linked in the state table."""

    def __init__(self, task: str, old: Any, new: Any) -> None:
        self.task, self.old, self.new = task, str(old), str(new)
        super().__init__(f"task {task!r}: illegal transition {self.old} -> {self.new}")


class GraphError(TaskloomError):
    """The dependency graph cannot be run: unknown dependency, duplicate name or cycle."""


class CycleError(GraphError):
    """The dependency graph has a cycle; ``path`` lists it, first name repeated at the end."""

    def __init__(self, path: Sequence[str]) -> None:
        self.path = list(path)
        super().__init__("dependency cycle: " + " -> ".join(self.path))


class UnknownDependencyError(GraphError):
    def __init__(self, task: str, dependency: str) -> None:
        self.task, self.dependency = task, dependency
        super().__init__(f"task {task!r} depends on unknown task {dependency!r}")


class DuplicateTaskError(GraphError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"duplicate task name {name!r}")


class UpstreamFailed(TaskloomError):
    """Set as a task's error when a task it depends on failed or was cancelled."""

    def __init__(self, task: str, upstream: str, upstream_state: str = "failed") -> None:
        self.task, self.upstream = task, upstream
        super().__init__(f"task {task!r} not run: upstream task {upstream!r} {upstream_state}")


class TaskCancelled(TaskloomError):
    """Raised by :meth:`CancelToken.raise_if_cancelled` and set on cancelled tasks."""


class StoreFailure(TaskloomError):
    """The run's store could not record a result: the task is not completed."""


class TaskTimeout(TaskloomError):
    """A task attempt ran past its timeout."""

    def __init__(self, task: str, timeout: float) -> None:
        self.task, self.timeout = task, timeout
        super().__init__(f"task {task!r} timed out after {timeout:g}s")


class QueueFullError(TaskloomError):
    """A bounded :class:`TaskQueue` is at ``max_size``."""


class PluginError(TaskloomError):
    """A plugin failed to load, or a plugin hook raised where a task depends on it."""


class UnknownComponentError(TaskloomError, KeyError):
    """No plugin registered a component of that kind and name."""

    def __init__(self, kind: str, name: str, known: Sequence[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        listing = ", ".join(self.known) or "(none)"
        super().__init__(f"no {kind} {name!r}; registered: {listing}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ConfigError(TaskloomError):
    """Invalid configuration; ``problems`` lists every problem found (``key.path: message``)."""

    def __init__(self, problems: Sequence[str] | str, source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


class TaskNotFoundError(TaskloomError, KeyError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id or name {task_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])
