"""Subflows: a task that runs another workflow as a child run.

The child run has its own id, ``<parent run id>.<task name>`` (so a retry or a resume finds
it), and records the parent in ``parent_id``. It runs on the parent's engine (its executor
settings, its store) with the parameters the task passes down, and the task's result is the
child's outputs: ``{task name: result}`` of the child's tasks that no other child task
depends on. Conditions and mapped tasks of the child work as in any workflow.

Cancelling the parent (or the task) cancels the child. A child that does not complete fails
the task (:class:`SubflowFailed`), and the task's policies decide: a retry resumes the child
with its failed tasks run again; resuming the parent resumes the child, whose completed tasks
keep their recorded results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloom.api.params import substitute
from taskloom.kernel.errors import TaskCancelled, TaskloomError
from taskloom.kernel.stash import StashKey
from taskloom.kernel.task import Task

#: How deep child runs may nest: a workflow running itself as a subflow stops here.
MAX_DEPTH = 20
_DEPTH: StashKey[int] = StashKey()


class SubflowFailed(TaskloomError):
    """The child run did not complete."""


@dataclass
class Workflow:
    """What a child run is made of: its tasks (fresh ones each time), ``when`` predicates,
    and a function that types the parameters passed down (default: taken as given)."""

    tasks: Sequence[Task]
    conditions: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    params: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    name: str | None = None


class SubflowBody:
    """The body of a subflow task (see the module docs). ``load`` builds the child's
    :class:`Workflow` afresh for each attempt; ``params`` are passed down, a string
    ``"{params.NAME}"`` read from the parent's parameters."""

    def __init__(self, load: Callable[[], Workflow], params: Mapping[str, Any] | None = None,
                 name: str | None = None, poll: float = 0.05) -> None:
        self.load = load
        self.params = dict(params or {})
        self.name = name
        self.poll = poll

    def __call__(self, context: Any) -> dict[str, Any]:
        from taskloom.api.workflows import Flow

        parent = context.run
        engine = parent.engine
        child_id = f"{parent.id}.{context.task.name}"
        depth = parent.stash.get(_DEPTH, 0) + 1
        if depth > MAX_DEPTH:
            raise SubflowFailed(f"child run {child_id} would nest {depth} levels deep (at "
                                f"most {MAX_DEPTH}): does a workflow run itself?")
        workflow = self.load()
        given = {k: substitute(v, parent.params) for k, v in self.params.items()}
        params = workflow.params(given) if workflow.params is not None else given
        name = workflow.name or self.name or context.task.name
        store = engine.store
        recorded = store.summary(child_id) if store is not None else None
        if recorded is not None and recorded["status"] == "completed":
            return _outputs(workflow.tasks, dict(recorded.get("results") or {}))
        if recorded is not None:  # a retry or a resume: what completed is kept
            run = engine.open_resumed_run(child_id, retry_failed=True, name=name,
                                          params=params)
            run.parent_id = parent.id
        else:
            run = engine.open_run(run_id=child_id, name=name, trigger="api",
                                  parent_id=parent.id, params=params)
        run.stash[_DEPTH] = depth
        token = context.token
        token.add_callback(run.cancel)
        flow = Flow(run, list(workflow.tasks), workflow.conditions)
        try:
            flow.start()
            while not flow.step(self.poll):
                if token.cancelled:
                    run.cancel()
        except BaseException:
            run.cancel()
            run.close()
            raise
        summary = run.close()
        if token.cancelled:
            raise TaskCancelled(f"child run {child_id} cancelled with its parent")
        if not summary.ok or flow.errors:
            failed = "; ".join(f"{n}: {e}" for n, e in list(summary.errors.items())[:3])
            raise SubflowFailed(f"child run {child_id} {summary.status}"
                                + (f" ({failed})" if failed else ""))
        return _outputs(summary.tasks, summary.results)


def _outputs(tasks: Sequence[Task], results: Mapping[str, Any]) -> dict[str, Any]:
    """Results of the tasks no other task depends on (the workflow's outputs)."""
    needed = {d for t in tasks for d in t.dependencies}
    return {t.name: results.get(t.name) for t in tasks if t.name not in needed}


def subflow(name: str, workflow: Callable[[], Sequence[Task] | Workflow], *,
            params: Mapping[str, Any] | None = None, **task: Any) -> Task:
    """A task running ``workflow()`` (fresh tasks, or a :class:`Workflow`) as a child run,
    passing ``params`` down; ``task`` takes :class:`~taskloom.Task`'s other arguments
    (dependencies, retry, timeout...)."""

    def load() -> Workflow:
        made = workflow()
        return made if isinstance(made, Workflow) else Workflow(list(made))

    return Task(name, fn=SubflowBody(load, params, name), **task)
