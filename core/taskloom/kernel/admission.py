"""Admission and trigger rules: how tasks join a run (checks, plans, their first state) and
how a final task releases its dependents. Called by the run (run.py) with its lock held."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import time
from typing import TYPE_CHECKING, Any

from taskloom.kernel.attempt import Plan, _signature
from taskloom.kernel.errors import DuplicateTaskError, TaskCancelled, TaskloomError, UpstreamFailed
from taskloom.kernel.executor import Executor
from taskloom.kernel.graph import validate_tasks
from taskloom.kernel.states import TERMINAL, TaskState
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.run import Run

PENDING, WAITING, READY = TaskState.PENDING, TaskState.WAITING, TaskState.READY
RUNNING, COMPLETED, FAILED = TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED
RETRYING, CANCELLED, SKIPPED = TaskState.RETRYING, TaskState.CANCELLED, TaskState.SKIPPED


def join(run: Run, batch: list[Task]) -> None:
    """Check ``batch`` against the run (duplicates, tasks active elsewhere, the graph, task
    options), work out each task's plan and wire it into the run's graph."""
    known = run.tasks
    for t in batch:
        have = known.get(t.name)
        if have is t:
            raise TaskloomError(
                f"task {t.name!r} is already in run {run.id}: run it again in a new run"
            )
        if have is not None:
            raise DuplicateTaskError(t.name)
        if t._status not in TERMINAL and t._run is not None and not t._run._closed:
            raise TaskloomError(f"task {t.name!r} is active in another run")
    validate_tasks(batch, known=known)
    flags, fast = run._flags, run.plugins.fast
    for t in batch:
        if t.options:
            run.plugins.check_task_options(t)
            if flags.task_prepare:
                fast["taskloom_task_prepare"](t, run)
    if run._wrappers is None:  # the run's own wrappers, asked for once
        run._wrappers = tuple(fast["taskloom_run_wrappers"](run)) if flags.run_wrappers else ()
    # Tasks whose body takes no arguments and that have no wrappers of their own share one
    # plan per body and executor: a plan per task is 80 bytes times 100,000 tasks.
    shared: dict[tuple[Any, Executor], Plan] = {}
    base: Sequence[Any] = run._wrappers
    for t in batch:
        wrappers = base
        if flags.task_wrappers and (t.options or t.tags):
            wrappers = (*base, *(fast["taskloom_task_wrappers"](t, run) or ()))
        executor = run._executor_for(t)
        if len(wrappers) > len(base) or type(t).execute is not Task.execute:
            t._plan = Plan(t, wrappers, executor)
            continue
        plan = shared.get(key := (t.fn, executor))
        if plan is None:
            plan = Plan(t, wrappers, executor)
            names, varkw, _ = _signature(t.fn) if t.fn is not None else ((), False, False)
            if not names and not varkw:
                shared[key] = plan
        t._plan = plan
    for t in batch:
        t._run = run
        t._dependents = []
        known[t.name] = t
        # Finished in an earlier run: back to pending (and its old outcome gone) before any
        # dependent looks at its state.
        if t._status in TERMINAL or t._status is RETRYING:
            run._set(t, PENDING)
            t._reset_outcome()
    for t in batch:
        for dep in dict.fromkeys(t.dependencies):
            known[dep]._dependents.append(t)


def admit(
    run: Run, task: Task, restored: Mapping[str, Any], skip: frozenset[str] = frozenset(),
    failed: Mapping[str, tuple[str, str | None]] | None = None,
) -> None:
    """Give a joined task its first state: skipped, restored (resume: completed or failed
    without an attempt), ready, or waiting on its dependencies."""
    run._open += 1
    if task.name in skip:
        run._set(task, SKIPPED)
    elif task.name in restored:
        # Resume: the result was recorded by an earlier session; no attempt is made.
        task.result = restored[task.name]
        run._set(task, COMPLETED)
    elif failed and task.name in failed:
        task.error, task.error_type = failed[task.name]
        run._set(task, FAILED)
    else:
        deps = task.dependencies
        if not deps:
            run._set(task, READY)
            run._push(task)
            return
        run._set(task, WAITING)
        tasks = run.tasks
        unique = dict.fromkeys(deps)
        task._waiting_on = len(unique)
        for dep in unique:
            up = tasks[dep]
            if up._status in TERMINAL:
                dep_done(run, task, up)
                if task._status is not WAITING:
                    return
        return
    terminal(run, task)


def terminal(run: Run, task: Task, stack: list[Task] | None = None) -> None:
    """Bookkeeping once ``task`` reached a final state, then release its dependents.

    Inside a release loop (``stack`` given) the task is pushed for that loop to release, so
    long failure cascades need no recursion.
    """
    run._open -= 1
    task._completed = time()
    if task._started is not None:
        task.duration = task._completed - task._started
    if "_task_done" in run.__dict__:
        run._task_done.notify_all()
    if stack is not None:
        stack.append(task)
        return
    stack = [task]
    while stack:
        up = stack.pop()
        completed = up._status is COMPLETED
        for d in up._dependents:
            if d._status is not WAITING:
                continue
            if completed and d.trigger_rule == "all_success":  # dep_done's common case
                d._waiting_on -= 1
                if not d._waiting_on:
                    run._set(d, READY)
                    run._push(d)
            else:
                dep_done(run, d, up, stack)
    if run._open == 0:
        run._idle.set()


def dep_done(run: Run, task: Task, up: Task, stack: list[Task] | None = None) -> None:
    """``up`` (a dependency of waiting ``task``) is final: apply the trigger rule."""
    task._waiting_on -= 1
    state = up._status
    rule = task.trigger_rule
    if rule == "all_success" and state is not COMPLETED:
        if state is SKIPPED:
            finish_without_run(run, task, SKIPPED, None, stack)
        else:
            why, end = ("was cancelled", CANCELLED) if state is CANCELLED else ("failed", FAILED)
            finish_without_run(run, task, end, UpstreamFailed(task.name, up.name, why), stack)
        return
    if rule == "one_failed":
        if state is not FAILED:  # ready at the first failed upstream, skipped if none failed
            if task._waiting_on == 0:
                finish_without_run(run, task, SKIPPED, None, stack)
            return
    elif task._waiting_on:
        return
    run._set(task, READY)
    run._push(task)


def finish_without_run(
    run: Run, task: Task, state: TaskState, error: BaseException | None,
    stack: list[Task] | None,
) -> None:
    # The error is recorded first so transition observers see why the task ended.
    if error is not None:
        record_error(task, error)
    run._set(task, state)
    terminal(run, task, stack)


def record_error(task: Task, error: BaseException) -> None:
    task.exception = error
    task.error = str(error) or type(error).__name__
    task.error_type = type(error).__name__


def cancel_locked(run: Run, task: Task, reason: str) -> None:
    if task._status is RUNNING:
        attempt = task._attempt
        if attempt is not None:
            attempt.token.cancel(reason)
            task._plan.executor.cancel(attempt)
            task._attempt = None
    record_error(task, TaskCancelled(f"task {task.name!r} {reason}"))
    run._set(task, CANCELLED)
    terminal(run, task)
