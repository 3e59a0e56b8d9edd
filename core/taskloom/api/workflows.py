"""The documented workflows (sequential, parallel, conditional), all on the taskloom engine.

Every workflow is one engine run: the same queue, executors, policies (retries, timeouts,
breakers) and hooks as any run. A sequential workflow is a chain (each step depends on the
previous one, so a step can take the previous step's result by parameter name); a parallel
workflow is a run of independent tasks; a conditional workflow adds each step to a live run
once its condition has been evaluated, and the tasks it does not take end ``skipped``.

:class:`Flow` drives a task graph in which some tasks have a condition (``when`` in TOML):
a conditional task joins the run once its dependencies are final and its predicate, given
a :class:`ConditionContext` (the context object bodies receive), returned true; otherwise
it is ``skipped`` and its dependents follow their trigger rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.api.graph import DependencyGraph
from taskloom.api.mapping import MappedTask
from taskloom.kernel.engine import (
    Attempt,
    Engine,
    Run,
    RunSummary,
    TaskContext,
    unfilled_parameters,
)
from taskloom.kernel.errors import ConfigError
from taskloom.kernel.states import TERMINAL, TaskState
from taskloom.kernel.task import Task

log = logging.getLogger("taskloom.workflows")

Condition = Callable[[Any], Any]

_engines: dict[int | None, Engine] = {}
_engines_lock = threading.Lock()


def default_engine(max_workers: int | None = None) -> Engine:
    """A shared engine per ``max_workers`` value, built on first use."""
    with _engines_lock:
        engine = _engines.get(max_workers)
        if engine is None:
            engine = _engines[max_workers] = Engine(max_workers=max_workers)
        return engine


class ConditionContext(TaskContext):
    """What a ``when`` predicate receives: the same context object as a task body (``results``,
    ``data``, ``config``, ``task``, ``run_id``, ``token``), made before the task's first
    attempt, plus ``last_result``: the result of the task's last completed dependency.

    Dict-style reads of the older predicate argument still work: ``context["results"]``,
    ``context["last_result"]``, ``context["task"]`` (the task's name) and the keys of the run's
    data, with ``get`` and ``in``; they read a snapshot taken when the predicate is asked.
    """

    __slots__ = ("_view",)

    def __init__(self, run: Run, task: Task) -> None:
        super().__init__(Attempt(task, 0, run))
        view = dict(run.data)
        results = view["results"] = dict(run.results)
        done = [d for d in task.dependencies if d in results]
        if done:
            view["last_result"] = results[done[-1]]
        view["task"] = task.name
        self._view = view

    @property
    def last_result(self) -> Any:
        """The result of the task's last completed dependency (None when none completed)."""
        return self._view.get("last_result")

    def __getitem__(self, key: str) -> Any:
        return self._view[key]

    def __contains__(self, key: object) -> bool:
        return key in self._view

    def get(self, key: str, default: Any = None) -> Any:
        return self._view.get(key, default)


def condition_context(run: Run, task: Task) -> ConditionContext:
    """What a ``when`` predicate of ``task`` receives (see :class:`ConditionContext`)."""
    return ConditionContext(run, task)


class Flow:
    """Runs ``tasks`` on ``run``, holding back conditional tasks until they can be decided.

    Tasks without a condition, and not downstream of one, join the run at :meth:`start`. A
    conditional task is decided once all its dependencies are final; tasks downstream of it
    join as soon as their dependencies are in the run. Call :meth:`step` until it returns
    True. A predicate that raises leaves its task ``skipped`` and records the error in
    :attr:`errors`.
    """

    def __init__(self, run: Run, tasks: Sequence[Task],
                 conditions: Mapping[str, Condition] | None = None) -> None:
        self.run = run
        self.tasks = list(tasks)
        self.conditions = dict(conditions or {})
        self.errors: dict[str, BaseException] = {}
        by_name = {t.name: t for t in self.tasks}
        for task in self.tasks:  # a task mapped over another needs its result
            over = getattr(task, "map", None)
            if isinstance(task, MappedTask) and over is not None and over.over in by_name \
                    and over.over not in task.dependencies:
                task.dependencies.append(over.over)
        graph = DependencyGraph.from_tasks(t for t in self.tasks)
        held: set[str] = set()
        # A dependency outside ``tasks`` is one the run has (a result carried in) or an
        # unknown name, which the run refuses when the task joins it.
        order = [n for n in graph.topological_sort() if n in by_name]
        for name in order:
            task = by_name[name]
            if name in self.conditions or isinstance(task, MappedTask) or any(
                    d in held for d in task.dependencies):
                held.add(name)
        self._held = [by_name[n] for n in order if n in held]
        self._start = [t for t in self.tasks if t.name not in held]
        self.stopped = False

    @property
    def held(self) -> list[Task]:
        """Tasks not yet in the run."""
        return list(self._held)

    def start(self) -> None:
        # A held task joins the run later: its body is checked now, before anything starts.
        problems = [f"task {t.name!r}: {p}" for t in self._held
                    if not isinstance(t, MappedTask) for p in unfilled_parameters(t)]
        if problems:
            raise ConfigError(problems)
        self.run.add(self._start)
        self.run.start()
        self._advance()

    def stop(self) -> None:
        """Add nothing more to the run (the held tasks never start)."""
        self.stopped = True

    def step(self, timeout: float | None = None) -> bool:
        """Decide what can be decided, then wait up to ``timeout``; True when all is final."""
        self._advance()
        if self._held and not self.stopped:
            blocker = self._held[0]
            waiting = [self.run.tasks[d] for d in blocker.dependencies
                       if self.run.tasks[d].status not in TERMINAL]
            self.run.wait(timeout, tasks=waiting)
            self._advance()
            return not self._held and self.run.wait(0)
        return self.run.wait(timeout)

    def _advance(self) -> None:
        if self.stopped:
            return
        tasks = self.run.tasks
        keep: list[Task] = []
        for task in self._held:
            deps = task.dependencies
            if any(d not in tasks for d in deps):
                keep.append(task)
                continue
            predicate = self.conditions.get(task.name)
            mapped = isinstance(task, MappedTask)
            if predicate is None and not mapped:
                self.run.add([task])
                continue
            if any(tasks[d].status not in TERMINAL for d in deps):
                keep.append(task)
                continue
            if task.trigger_rule == "all_success" and any(
                tasks[d].status is not TaskState.COMPLETED for d in deps
            ):
                # An upstream did not complete: the trigger rule decides (an upstream
                # failure fails the task, naming it); the condition is not asked.
                self.run.add([task.unmapped() if isinstance(task, MappedTask) else task])
                continue
            if predicate is None:
                self._expand(task)  # type: ignore[arg-type]
                continue
            try:
                take = bool(predicate(condition_context(self.run, task)))
            except Exception as exc:
                log.error("condition of task %r raised %s: %s", task.name,
                          type(exc).__name__, exc)
                self.errors[task.name] = exc
                take = False
            if take and isinstance(task, MappedTask):
                self._expand(task)
                continue
            gather = task.unmapped() if isinstance(task, MappedTask) else task
            self.run.add([gather], skipped=() if take else [task.name])
        self._held = keep

    def _expand(self, task: MappedTask) -> None:
        """Add a mapped task's instances and its gather task (:mod:`taskloom.api.mapping`)."""
        over = task.map.over
        source = self.run.tasks.get(over)
        if source is None and over in self.run.params:
            elements: Any = self.run.params[over]
        elif source is not None and source.status is TaskState.COMPLETED:
            elements = source.result
        elif source is None:
            self.run.add([task.failing(ConfigError([
                f"task {task.name!r} maps over {over!r}, which is neither a task of the "
                "workflow nor a run parameter"]))])
            return
        else:
            self.run.add([task.unmapped()])
            return
        instances, gather = task.expand(elements)
        self.run.add([*instances, gather])


def run_flow(
    engine: Engine,
    tasks: Sequence[Task],
    conditions: Mapping[str, Condition] | None = None,
    *,
    name: str | None = None,
    data: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> RunSummary:
    """Run tasks, some of them conditional or mapped (:mod:`taskloom.api.mapping`), to
    completion on ``engine`` with the run parameters ``params``."""
    run = engine.open_run(name=name, data=data, trigger="api", params=params)
    flow = Flow(run, tasks, conditions)
    try:
        flow.start()
        while not flow.step(None):
            pass
    except BaseException:
        run.cancel()
        run.close()
        raise
    return run.close()


class _Workflow:
    def __init__(self, name: str, engine: Engine | None = None) -> None:
        self.name = name
        self.tasks: list[Task] = []
        self.status = "not_started"
        self._engine = engine

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = default_engine()
        return self._engine

    def add_task(self, task: Task) -> None:
        """Add a task to the workflow."""
        self.tasks.append(task)


class SequentialWorkflow(_Workflow):
    """Tasks run one after another, each after the previous one completed.

    ``execute()`` returns ``{"status": "completed", "results": [...]}`` (results in step
    order) or, when a step fails, ``{"status": "failed", "error": ..., "step": n}`` (``n``
    counts from 1); the steps after it do not run.
    """

    def __init__(self, name: str, *, engine: Engine | None = None) -> None:
        super().__init__(name, engine)
        self.current_step = 0

    def execute(self) -> dict[str, Any]:
        self.status = "running"
        chained: list[Task] = []
        for prev, task in zip(self.tasks, self.tasks[1:], strict=False):
            if prev.name not in task.dependencies:
                task.dependencies.append(prev.name)
                chained.append(task)
        try:
            summary = self.engine.run(self.tasks, name=self.name)
        finally:
            for prev, task in zip(self.tasks, self.tasks[1:], strict=False):
                if task in chained:
                    task.dependencies.remove(prev.name)
        for i, task in enumerate(self.tasks):
            self.current_step = i
            if task.status is not TaskState.COMPLETED:
                self.status = "failed"
                log.info("workflow %r failed at step %d: %s", self.name, i + 1, task.name)
                return {"status": "failed", "error": task.error or task.status.value,
                        "step": i + 1}
        self.status = summary.status
        return {"status": "completed", "results": [t.result for t in self.tasks]}


class ParallelWorkflow(_Workflow):
    """Independent tasks run at once, up to ``max_workers``.

    ``execute_parallel()`` returns ``{task_name: result}``; a failed task's entry is
    ``{"error": message}``. ``execute_async()`` is the same as a coroutine.
    """

    def __init__(self, name: str, max_workers: int = 4, *, engine: Engine | None = None) -> None:
        super().__init__(name, engine)
        self.max_workers = max_workers

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = default_engine(self.max_workers)
        return self._engine

    def execute_parallel(self) -> dict[str, Any]:
        self.status = "running"
        self.engine.run(self.tasks, name=self.name)
        results: dict[str, Any] = {}
        for task in self.tasks:
            if task.status is TaskState.COMPLETED:
                results[task.name] = task.result
            else:
                results[task.name] = {"error": task.error or task.status.value}
        self.status = "completed"
        return results

    async def execute_async(self) -> dict[str, Any]:
        """Run the workflow without blocking the event loop."""
        import asyncio  # only async callers pay for the import

        return await asyncio.to_thread(self.execute_parallel)


@dataclass
class _Step:
    condition: Condition | None
    task: Task | None
    other: Task | None = None  # a branch's false task
    branch: bool = False

    def tasks(self) -> list[Task]:
        return [t for t in (self.task, self.other) if t is not None]


class ConditionalWorkflow(_Workflow):
    """Steps run in order, each only when its condition, given the context dict, is true.

    ``add_step(task, condition=None)``: run ``task`` when ``condition(context)`` is true
    (always without a condition). ``add_branch(condition, true_task, false_task=None)``: run
    one or the other. ``execute(context)`` returns ``{"status", "results", "context"}``; after
    each step ``context["last_result"]`` is its result, and task bodies taking a ``context``
    parameter see the dict as ``context.data``. Tasks not taken end ``skipped``. A failed step
    (or a condition that raises) stops the workflow: ``status`` is ``failed`` with ``error``
    and ``step`` (from 1), and the remaining steps are skipped.
    """

    def __init__(self, name: str, *, engine: Engine | None = None) -> None:
        super().__init__(name, engine)
        self.steps: list[_Step] = []

    def add_step(self, task: Task, condition: Condition | None = None) -> None:
        self.steps.append(_Step(condition, task))
        self.tasks.append(task)

    def add_branch(self, condition: Condition, true_task: Task | None,
                   false_task: Task | None = None) -> None:
        self.steps.append(_Step(condition, true_task, false_task, branch=True))
        self.tasks.extend(t for t in (true_task, false_task) if t is not None)

    def add_task(self, task: Task) -> None:
        self.add_step(task)

    def execute(self, context: dict[str, Any] | None = None) -> dict[str, Any]:
        self.status = "running"
        context = {} if context is None else context
        run = self.engine.open_run(name=self.name, trigger="api")
        run.data = context  # one dict: conditions and task bodies see the same context
        run.start()
        results: list[Any] = []
        outcome: dict[str, Any] | None = None
        try:
            for i, step in enumerate(self.steps):
                if outcome is not None:
                    run.add(step.tasks(), skipped=[t.name for t in step.tasks()])
                    continue
                try:
                    take = step.condition is None or bool(step.condition(context))
                except Exception as exc:
                    outcome = {"status": "failed", "error": f"condition raised "
                               f"{type(exc).__name__}: {exc}", "step": i + 1}
                    run.add(step.tasks(), skipped=[t.name for t in step.tasks()])
                    continue
                chosen = step.task if take else step.other
                others = [t for t in step.tasks() if t is not chosen]
                run.add(step.tasks(), skipped=[t.name for t in others])
                if chosen is None:
                    continue
                run.wait(tasks=[chosen])
                if chosen.status is TaskState.COMPLETED:
                    results.append(chosen.result)
                    context["last_result"] = chosen.result
                    log.info("executed: %s", chosen.name)
                else:
                    outcome = {"status": "failed",
                               "error": chosen.error or chosen.status.value, "step": i + 1}
            run.wait()
        finally:
            run.close()
        if outcome is None:
            outcome = {"status": "completed"}
        self.status = outcome["status"]
        return {**outcome, "results": results, "context": context}
