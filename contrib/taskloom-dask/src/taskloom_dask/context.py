"""What a task body on a Dask worker receives as ``context``: a picklable snapshot.

The engine's :class:`taskloom.TaskContext` holds the live run (locks, every task, the
cancellation token) and cannot leave the process. The snapshot carries what a body reads:
the task's fields and ``config``, its dependencies' results, the run's id and a copy of its
shared ``data``. Writes to ``data`` on a worker do not come back, and cancellation does not
reach a body already running on a worker (Dask cannot interrupt it): ``cancelled`` is False.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom import Attempt


@dataclass(frozen=True)
class TaskInfo:
    """The fields of the task a body may read."""

    name: str
    id: str
    description: str
    priority: int
    dependencies: tuple[str, ...]
    config: dict[str, Any]
    tags: frozenset[str]


@dataclass(frozen=True)
class AttemptInfo:
    number: int


class DependencyResults(Mapping[str, Any]):
    """The results of the task's dependencies; other tasks' results stay with the engine."""

    def __init__(self, task: str, results: dict[str, Any]) -> None:
        self._task = task
        self._results = results

    def __getitem__(self, name: str) -> Any:
        try:
            return self._results[name]
        except KeyError:
            raise KeyError(
                f"{name!r}: on Dask, task {self._task!r} sees the results of its own "
                f"dependencies only ({', '.join(self._results) or 'none'})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __repr__(self) -> str:
        return f"DependencyResults({self._results!r})"


@dataclass(frozen=True)
class RemoteContext:
    """``context`` for a body running on a Dask worker (see the module docstring)."""

    task: TaskInfo
    attempt: AttemptInfo
    run_id: str
    results: DependencyResults
    data: dict[str, Any] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def config(self) -> dict[str, Any]:
        return self.task.config

    @classmethod
    def of(cls, attempt: Attempt) -> RemoteContext:
        task = attempt.task
        run = attempt.run
        deps = tuple(dict.fromkeys(task.dependencies))
        tasks = run.tasks
        results = {d: tasks[d].result for d in deps if d in run.results}
        info = TaskInfo(
            name=task.name,
            id=task.id,
            description=task.description,
            priority=task.priority,
            dependencies=deps,
            config=dict(task.config),
            tags=frozenset(task.tags),
        )
        return cls(
            task=info,
            attempt=AttemptInfo(attempt.number),
            run_id=run.id,
            results=DependencyResults(task.name, results),
            data=dict(run.data),
        )
