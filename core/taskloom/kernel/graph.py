"""The validation every run does before it starts: duplicates, unknown dependencies, cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from taskloom.kernel.errors import CycleError, DuplicateTaskError, UnknownDependencyError

if TYPE_CHECKING:
    from taskloom.kernel.task import Task


def find_cycle(nodes: Iterable[str], successors: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a path whose first and last element are equal, or None; roots are tried
    in the order of ``nodes`` and successors in their order, so the answer is deterministic."""
    color: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in nodes:
        if root in color:
            continue
        stack: list[tuple[str, list[str]]] = [(root, list(successors[root]))]
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
                    stack.append((nxt, list(successors[nxt])))
            else:
                color[node] = 2
                path.pop()
                stack.pop()
    return None


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
        rest = [t.name for t in tasks if indegree[t.name] > 0]
        left = set(rest)
        cycle = find_cycle(rest, {n: [s for s in succ[n] if s in left] for n in rest})
        assert cycle is not None
        raise CycleError(cycle)
