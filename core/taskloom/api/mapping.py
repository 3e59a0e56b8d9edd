"""Mapping: a task run once per element of an upstream result or of a run parameter.

A mapped task ``proc`` over ``files`` becomes, once ``files`` is known, one task instance per
element, named ``proc[0]``, ``proc[1]``... (or ``proc[<key>]`` with a ``key``), each with
the mapped task's body, dependencies, priority, tags and options (retries, timeout, cache,
limits and queue order apply to each instance on its own), plus a task named ``proc`` that
gathers the instances' results as a list in element order. Tasks downstream of ``proc``
depend on that gather task and receive the list.

Failed elements: the gather task waits for every instance, whatever its outcome, and
completes only when every instance completed. When one did not (failed after its retries,
cancelled, skipped), the gather task fails naming those elements, and the trigger rules of
the tasks downstream decide as for any failed upstream: ``all_success`` fails (naming the
gather task); ``all_done``, ``always`` and ``one_failed`` run and receive the partial list,
in element order, with a :class:`FailedElement` (false in a test) in place of each element
that did not complete. The failed gather task keeps that list as its ``result``.

An empty list gives zero instances and a gather task whose result is ``[]``. When the
source did not complete, no instance is made and the gather task follows the mapped task's
trigger rule against its dependencies (an ``all_success`` task fails naming the source).

Mapped tasks are expanded by :class:`~taskloom.api.workflows.Flow` (``taskloom run``,
``taskloom resume``, :func:`~taskloom.api.workflows.run_flow`, the
:class:`~taskloom.api.manager.TaskManager`); running one directly on an engine is refused
with an error saying so.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.kernel.attempt import _signature
from taskloom.kernel.errors import TaskloomError
from taskloom.kernel.states import TaskState
from taskloom.kernel.task import Task

#: Keys of ``map = {...}`` in TOML.
MAP_KEYS = ("over", "as", "key")


class MappedElementsFailed(TaskloomError):
    """Some instances of a mapped task did not complete: its gather task fails with this."""


@dataclass(frozen=True)
class FailedElement:
    """Stands, in the list a downstream task receives, for an element whose instance did not
    complete: the instance's ``name``, the element's ``index``, how it ended (``state``:
    ``failed``, ``cancelled``, ``skipped``) and its ``error``. It is false in a test, so
    ``[r for r in results if r]`` drops them (test with ``isinstance`` when
    a completed element may be false itself)."""

    name: str
    index: int
    state: str
    error: str | None

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class Map:
    """How a task is mapped: ``over`` an upstream task's result or a run parameter (a task
    of that name wins), each element given to the body's parameter ``as_`` (default: named
    like ``over``), instances named by ``key`` (a field of each element, or a function of
    it; default: the element's index)."""

    over: str
    as_: str | None = None
    key: str | Callable[[Any], Any] | None = None

    @property
    def parameter(self) -> str:
        return self.as_ or self.over

    def name_of(self, task: str, index: int, element: Any) -> str:
        key = self.key
        if key is None:
            return f"{task}[{index}]"
        if callable(key):
            return f"{task}[{key(element)}]"
        if not isinstance(element, Mapping) or key not in element:
            raise TypeError(f"task {task!r}: element {index} has no key {key!r} to name its "
                            f"instance (got {element!r:.60})")
        return f"{task}[{element[key]}]"


def parse_map(task: str, value: Any) -> Map:
    """The TOML ``map`` value (``"files"`` or ``{over = "files", as = "path", key = "id"}``);
    ``ValueError`` naming the task and the key at fault."""
    if isinstance(value, str):
        value = {"over": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"task {task!r}: map: expected a name or a table {{over = ...}}, "
                         f"got {value!r}")
    unknown = [k for k in value if k not in MAP_KEYS]
    if unknown:
        raise ValueError(f"task {task!r}: map.{unknown[0]}: unknown key; map takes "
                         f"{', '.join(MAP_KEYS)}")
    over, as_, key = value.get("over"), value.get("as"), value.get("key")
    if not isinstance(over, str) or not over:
        raise ValueError(f"task {task!r}: map.over: expected the name of a task or a "
                         f"parameter, got {over!r}")
    if as_ is not None and (not isinstance(as_, str) or not as_.isidentifier()
                            or keyword.iskeyword(as_)):
        raise ValueError(f"task {task!r}: map.as: expected a parameter name, got {as_!r}")
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError(f"task {task!r}: map.key: expected a field name, got {key!r}")
    return Map(over, as_, key)


class MappedTask(Task):
    """A task to run once per element (see the module docs). ``map`` says over what; every
    other argument is :class:`~taskloom.Task`'s, applied to each instance."""

    def __init__(self, name: str, *, map: Map, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.map = map
        fn = self.fn
        if fn is None:
            raise ValueError(f"task {name!r}: a mapped task needs a body (fn)")
        names, varkw, _ = _signature(fn)
        if map.parameter not in names and not varkw:
            raise ValueError(f"task {name!r}: the body has no parameter {map.parameter!r} "
                             "to receive each element (map.as names it)")
        import inspect

        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            params = []  # type: ignore[assignment]
        filled = {map.parameter, "context", map.over, *self.dependencies}
        unfilled = [p.name for p in params if p.name not in filled and p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if unfilled:
            raise ValueError(f"task {name!r}: parameter {unfilled[0]!r} of the body matches "
                             "no dependency and has no default")

    def execute(self, **kwargs: Any) -> Any:
        raise TaskloomError(f"task {self.name!r} is mapped over {self.map.over!r}: run it "
                            "with taskloom run, run_flow or a TaskManager, which make its "
                            "instances")

    def expand(self, elements: Any) -> tuple[list[Task], Task]:
        """The instances for ``elements`` and the gather task named like this one.

        An element list that cannot be mapped (not a list, unnamed or duplicate instances)
        gives no instance and a gather task that fails saying why."""
        try:
            instances = self.instances(elements)
        except (TypeError, ValueError) as exc:
            return [], self._gather([], error=exc)
        return instances, self._gather([t.name for t in instances])

    def failing(self, error: BaseException) -> Task:
        """A gather task that fails with ``error`` (nothing to map)."""
        return self._gather([], error=error)

    def unmapped(self) -> Task:
        """The gather task alone, against this task's dependencies and trigger rule: when
        the source did not complete, the rule decides (and a run of it maps nothing)."""
        return self._gather([], dependencies=self.dependencies,
                            trigger_rule=self.trigger_rule)

    def instances(self, elements: Any) -> list[Task]:
        """One task per element, named as :class:`Map` says; ``TypeError``/``ValueError``
        when ``elements`` is not a list or two instances would share a name."""
        if isinstance(elements, (str, bytes, Mapping)) or not isinstance(elements, Sequence):
            raise TypeError(f"task {self.name!r} maps over {self.map.over!r}, which is "
                            f"{type(elements).__name__}, not a list")
        made: list[Task] = []
        seen: set[str] = set()
        names, varkw, is_async = _signature(self.fn)  # type: ignore[arg-type]
        wants = frozenset(names)
        for i, element in enumerate(elements):
            name = self.map.name_of(self.name, i, element)
            if name in seen:
                raise ValueError(f"task {self.name!r}: two elements are named {name!r} "
                                 "(map.key must be unique)")
            seen.add(name)
            made.append(_Instance(self, name, element, wants, varkw, is_async))
        return made

    def _gather(self, names: list[str], *, error: BaseException | None = None,
                dependencies: list[str] | None = None, trigger_rule: str = "all_done") -> Task:
        return Task(self.name, description=self.description, priority=self.priority,
                    dependencies=names if dependencies is None else dependencies,
                    fn=_Gather(self.name, names, error), trigger_rule=trigger_rule,
                    config={"mapped_over": self.map.over, "elements": len(names)})


class _Instance(Task):
    """One element's task: the mapped body with the element as its ``as`` parameter."""

    def __init__(self, origin: MappedTask, name: str, element: Any,
                 wants: frozenset[str], varkw: bool, is_async: bool) -> None:
        super().__init__(name, description=origin.description, priority=origin.priority,
                         dependencies=origin.dependencies, config=origin.config, fn=origin.fn,
                         tags=origin.tags, trigger_rule=origin.trigger_rule,
                         options=origin.options)
        self.element = element
        self._parameter = origin.map.parameter
        self._wants = wants
        self._varkw = varkw
        self._is_async = is_async

    def execute(self, context: Any, **deps: Any) -> Any:  # type: ignore[override]
        wants = self._wants
        kwargs = deps if self._varkw else {k: v for k, v in deps.items() if k in wants}
        kwargs[self._parameter] = self.element
        if "context" in wants:
            kwargs["context"] = context
        result = self.fn(**kwargs)  # type: ignore[misc]
        if self._is_async:
            import asyncio  # only async bodies pay for the import

            result = asyncio.run(result)
        return result


class _Gather:
    """The gather task's body: the instances' results in element order."""

    def __init__(self, task: str, names: list[str], error: BaseException | None) -> None:
        self.task = task
        self.names = names
        self.error = error

    def __call__(self, context: Any) -> list[Any]:
        if self.error is not None:
            raise self.error
        tasks = context.run.tasks
        results: list[Any] = []
        failed: list[str] = []
        for i, name in enumerate(self.names):
            t = tasks[name]
            if t.status is TaskState.COMPLETED:
                results.append(t.result)
            else:
                failed.append(f"{name} {t.status.value}")
                results.append(FailedElement(name, i, t.status.value, t.error))
        if failed:
            # Kept on the failed task: the kernel hands a dependency's ``result`` to the
            # dependents a permissive trigger rule runs.
            context.task.result = results
            shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more"
                                             if len(failed) > 5 else "")
            raise MappedElementsFailed(f"{len(failed)} of {len(self.names)} elements of "
                                       f"{self.task!r} did not complete: {shown}")
        return results


def map_task(task: Task, over: str, *, as_: str | None = None,
             key: str | Callable[[Any], Any] | None = None) -> MappedTask:
    """``task`` mapped over ``over`` (an upstream task, added to its dependencies when the
    workflow has a task of that name, or a run parameter)."""
    return MappedTask(task.name, map=Map(over, as_, key), description=task.description,
                      priority=task.priority, dependencies=list(task.dependencies),
                      config=task.config, fn=task.fn, tags=task.tags,
                      trigger_rule=task.trigger_rule, options=task.options)
