"""The documented dependency graph, and the validation every run does before it starts."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from taskloom.kernel.errors import CycleError, DuplicateTaskError, UnknownDependencyError

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
        color: dict[str, int] = {}  # 1 = on the stack, 2 = done
        for root in sorted(self._succ, key=self._order.__getitem__):
            if root in color:
                continue
            stack: list[tuple[str, list[str]]] = [(root, list(self._succ[root]))]
            path = [root]
            color[root] = 1
            while stack:
                node, todo = stack[-1]
                if todo:
                    nxt = todo.pop(0)
                    state = color.get(nxt)
                    if state == 1:
                        return [*path[path.index(nxt):], nxt]
                    if state is None:
                        color[nxt] = 1
                        path.append(nxt)
                        stack.append((nxt, list(self._succ[nxt])))
                else:
                    color[node] = 2
                    path.pop()
                    stack.pop()
        return None

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


def validate_tasks(tasks: Sequence[Task], known: Iterable[str] = ()) -> bool:
    """Reject duplicate names, unknown dependencies and cycles before anything runs.

    Returns True when some task is listed before one of its dependencies (the batch is
    valid, but not in dependency order).

    ``known`` names tasks that exist outside ``tasks`` (already in a live run); dependencies
    on them are allowed and cannot close a cycle, since those tasks cannot depend on new ones.
    """
    names: dict[str, Task] = {}
    for t in tasks:
        if t.name in names:
            raise DuplicateTaskError(t.name)
        names[t.name] = t
    known_set = known if isinstance(known, (set, frozenset, dict)) else set(known)
    # Tasks listed after their dependencies cannot form a cycle: one linear pass proves it
    # for the common case; only a forward reference needs the full check.
    seen: set[str] = set()
    forward = False
    for t in tasks:
        for dep in t.dependencies:
            if dep in seen:
                continue
            if dep in names:  # in this batch (perhaps known too: a re-run), listed later
                forward = True
            elif dep not in known_set:
                raise UnknownDependencyError(t.name, dep)
        seen.add(t.name)
    if forward:
        _check_acyclic(tasks)
    return forward


def _check_acyclic(tasks: Sequence[Task]) -> None:
    """Kahn's algorithm over the batch; a leftover means a cycle, reported as a path."""
    indegree = {t.name: 0 for t in tasks}
    succ: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for dep in t.dependencies:
            if dep in indegree:
                indegree[t.name] += 1
                succ[dep].append(t.name)
    stack = [n for n, d in indegree.items() if d == 0]
    seen = 0
    while stack:
        n = stack.pop()
        seen += 1
        for s in succ[n]:
            indegree[s] -= 1
            if indegree[s] == 0:
                stack.append(s)
    if seen != len(indegree):
        rest = [t for t in tasks if indegree[t.name] > 0]
        graph = DependencyGraph.from_tasks(rest)
        cycle = graph.find_cycle()
        assert cycle is not None
        raise CycleError(cycle)
