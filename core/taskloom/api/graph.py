"""The documented dependency graph: a directed graph of task ids with priorities."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import TYPE_CHECKING

from taskloom.kernel.errors import CycleError
from taskloom.kernel.graph import find_cycle

if TYPE_CHECKING:
    from taskloom.kernel.task import Task


class DependencyGraph:
    """A directed graph of task ids.

    ``add_dependency(from_task, to_task)`` means **``to_task`` depends on ``from_task``**: the
    edge runs from the prerequisite to its dependent, the direction work flows. Adding an edge
    that closes a cycle is allowed; :meth:`has_cycle` then says so and
    :meth:`topological_sort` raises :class:`CycleError` with the cycle's path.
    Orders are deterministic: lower priority number first, then insertion order.
    """

    def __init__(self) -> None:
        self._succ: dict[str, dict[str, None]] = {}  # ordered sets
        self._pred: dict[str, dict[str, None]] = {}
        self._priority: dict[str, int] = {}
        self._order: dict[str, int] = {}

    # -- building ---------------------------------------------------------------------------
    def add_task(self, task_id: str, priority: int = 5) -> None:
        if task_id not in self._succ:
            self._succ[task_id] = {}
            self._pred[task_id] = {}
            self._order[task_id] = len(self._order)
        self._priority[task_id] = priority

    def add_dependency(self, from_task: str, to_task: str) -> None:
        """Record that ``to_task`` depends on ``from_task``; unknown ids are added."""
        if from_task == to_task:
            raise CycleError([from_task, to_task])
        for t in (from_task, to_task):
            if t not in self._succ:
                self.add_task(t)
        self._succ[from_task][to_task] = None
        self._pred[to_task][from_task] = None

    def remove_dependency(self, from_task: str, to_task: str) -> None:
        try:
            del self._succ[from_task][to_task]
            del self._pred[to_task][from_task]
        except KeyError:
            raise KeyError(f"no dependency {from_task!r} -> {to_task!r}") from None

    def remove_task(self, task_id: str) -> None:
        for s in self._succ.pop(task_id):
            del self._pred[s][task_id]
        for p in self._pred.pop(task_id):
            del self._succ[p][task_id]
        del self._priority[task_id], self._order[task_id]

    @classmethod
    def from_tasks(cls, tasks: Iterable[Task]) -> DependencyGraph:
        graph = cls()
        tasks = list(tasks)
        for t in tasks:
            graph.add_task(t.name, t.priority)
        for t in tasks:
            for dep in t.dependencies:
                graph.add_dependency(dep, t.name)
        return graph

    # -- queries ----------------------------------------------------------------------------
    def __contains__(self, task_id: object) -> bool:
        return task_id in self._succ

    def __len__(self) -> int:
        return len(self._succ)

    def dependencies_of(self, task_id: str) -> list[str]:
        return list(self._pred[task_id])

    def dependents_of(self, task_id: str) -> list[str]:
        return list(self._succ[task_id])

    def _key(self, task_id: str) -> tuple[int, int]:
        return (self._priority[task_id], self._order[task_id])

    def get_ready_tasks(self, completed: Iterable[str] = ()) -> list[str]:
        """Tasks not in ``completed`` whose dependencies all are, best first."""
        done = set(completed)
        ready = [
            t for t, preds in self._pred.items()
            if t not in done and all(p in done for p in preds)
        ]
        return sorted(ready, key=self._key)

    def has_cycle(self) -> bool:
        return self.find_cycle() is not None

    def find_cycle(self) -> list[str] | None:
        """One cycle as a path whose first and last element are equal, or None."""
        return find_cycle(sorted(self._succ, key=self._order.__getitem__), self._succ)

    def topological_sort(self) -> list[str]:
        """Every task after its dependencies; ties by priority, then insertion order."""
        indegree = {t: len(p) for t, p in self._pred.items()}
        heap = [(self._key(t), t) for t, d in indegree.items() if d == 0]
        heapq.heapify(heap)
        order: list[str] = []
        while heap:
            _, t = heapq.heappop(heap)
            order.append(t)
            for s in self._succ[t]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    heapq.heappush(heap, (self._key(s), s))
        if len(order) != len(indegree):
            cycle = self.find_cycle()
            assert cycle is not None
            raise CycleError(cycle)
        return order
