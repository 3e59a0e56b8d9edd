"""The engine: runs a set of tasks to completion along their dependency graph.

Hot path (see docs/architecture.md): a worker that finishes a task takes the run's lock once,
records the outcome, releases the dependents, and hands itself the next ready task (the
thread executor keeps it, no hand-off). Hooks nobody implements are not called.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

# Re-exported: these were the engine's names before attempts had a module of their own.
from taskloom.kernel.attempt import Attempt as Attempt
from taskloom.kernel.attempt import Plan as Plan
from taskloom.kernel.attempt import TaskContext as TaskContext
from taskloom.kernel.attempt import _signature as _signature
from taskloom.kernel.attempt import unfilled_parameters as unfilled_parameters
from taskloom.kernel.clock import Clock, system_clock
from taskloom.kernel.decisions import Fail, Fallback, Retry
from taskloom.kernel.errors import (
    DuplicateTaskError,
    PluginError,
    StoreFailure,
    TaskCancelled,
    TaskloomError,
    UpstreamFailed,
)
from taskloom.kernel.executor import Executor
from taskloom.kernel.graph import validate_tasks
from taskloom.kernel.limiter import Limiter
from taskloom.kernel.stash import Stash
from taskloom.kernel.states import TERMINAL, TRANSITIONS, TaskState, check_transition
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.pluginmanager import PluginSet

log = logging.getLogger("taskloom.engine")

PENDING, WAITING, READY = TaskState.PENDING, TaskState.WAITING, TaskState.READY
RUNNING, COMPLETED, FAILED = TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED
RETRYING, CANCELLED, SKIPPED = TaskState.RETRYING, TaskState.CANCELLED, TaskState.SKIPPED

@dataclass
class RunSummary:
    """The outcome of a run."""

    id: str
    name: str | None
    status: str
    counts: dict[str, int]
    results: dict[str, Any]
    errors: dict[str, str]
    started_at: datetime | None
    finished_at: datetime | None
    duration: float
    tasks: list[Task] = field(default_factory=list, repr=False)
    #: Why the store could not record this run (the run then counts as failed).
    store_error: str | None = None
    #: What started the run: ``manual``, ``schedule``, ``resume`` or ``api`` (None: unknown).
    trigger: str | None = None
    #: The run this one continues (a resume, a child run), or None.
    parent_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class ResultsView(Mapping[str, Any]):
    """Read-only mapping of completed task names to results."""

    __slots__ = ("_tasks",)

    def __init__(self, tasks: dict[str, Task]) -> None:
        self._tasks = tasks

    def __getitem__(self, name: str) -> Any:
        t = self._tasks[name]
        if t._status is not COMPLETED:
            raise KeyError(name)
        return t.result

    def __iter__(self) -> Iterator[str]:
        return (n for n, t in list(self._tasks.items()) if t._status is COMPLETED)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: What can start a run: the CLI (``manual``), a scheduled fire, a resume, a program.
TRIGGERS = frozenset({"manual", "schedule", "resume", "api"})


class Run:
    """A set of tasks being executed. Built by :meth:`Engine.open_run` or :meth:`Engine.run`.

    A run stays open for more tasks until :meth:`close` (``TaskManager`` keeps one open).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        run_id: str | None = None,
        name: str | None = None,
        data: Mapping[str, Any] | None = None,
        trigger: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        if trigger is not None and trigger not in TRIGGERS:
            raise TaskloomError(
                f"run trigger {trigger!r} is not one of {', '.join(sorted(TRIGGERS))}"
            )
        self.engine = engine
        self.id = run_id or uuid.uuid4().hex[:12]
        self.name = name
        #: What started the run (:data:`TRIGGERS`), recorded by the store.
        self.trigger = trigger
        #: The run this one continues (a resume, a child run).
        self.parent_id = parent_id
        self.data: dict[str, Any] = dict(data or {})
        self.plugins = engine.plugins
        self.stash = Stash()  # plugins' typed per-run state
        self.hook = engine.plugins.hook
        self._flags = engine.plugins.flags
        self.clock: Clock = engine.clock
        self.tasks: dict[str, Task] = {}
        self.results = ResultsView(self.tasks)
        self._lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()
        self._queue = engine.create_queue()
        self._limiter = engine.create_limiter()
        self._executors: dict[str, Executor] = {}
        self._default_executor = engine.create_executor(None)
        self._max_inflight = self._default_executor.max_workers
        self._inflight = 0
        self._open = 0
        self._seq = 0
        self._started = False
        self._cancelling = False
        self._closed = False
        self._summary: RunSummary | None = None
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self._t0 = 0.0
        self._restored: dict[str, Any] = {}
        self._failed: dict[str, tuple[str, str | None]] = {}
        # The store is called directly (kernel/store.py), outside the observers' boundary.
        self._store: Any = engine.store
        self._store_transition: Any = getattr(engine.store, "record_transition", None)
        self._store_commit: Any = getattr(engine.store, "commit_result", None)
        self.store_error: str | None = None
        self.interrupted: str | None = None  # why the run was stopped from outside

    # -- public API --------------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self._summary is not None:
            return self._summary.status
        if not self._started:
            return "pending"
        return "running" if self._open else "idle"

    @property
    def executor(self) -> Executor:
        return self._default_executor

    @property
    def cancelling(self) -> bool:
        """True once the run is being cancelled: nothing new starts."""
        return self._cancelling

    @property
    def queued(self) -> int:
        """Ready tasks waiting for a worker."""
        return len(self._queue)

    @property
    def inflight(self) -> int:
        """Attempts handed to an executor that have not returned yet."""
        return self._inflight

    def idle(self) -> bool:
        """True when no task of the run is left to finish."""
        return self._idle.is_set()

    def executors(self) -> dict[str, Executor]:
        return {self._default_executor.name: self._default_executor, **self._executors}

    def add(
        self,
        tasks: Iterable[Task],
        restored: Mapping[str, Any] | None = None,
        skipped: Iterable[str] = (),
        failed: Mapping[str, tuple[str, str | None]] | None = None,
    ) -> None:
        """Add tasks (validated together with what the run already has) and queue the ready.

        A task runs once per run: running it again is a new run (a task finished in an
        earlier run goes back to ``pending`` here). ``restored`` maps task names to results
        recorded by an earlier session: those tasks go ``pending -> completed`` without an
        attempt (resume).
        ``failed`` maps task names to a recorded ``(error, error type)``: those start
        ``failed`` without an attempt (resume without retrying failures).
        ``skipped`` names tasks of the batch that are not to run (a condition not taken):
        they end ``skipped`` and their dependents follow their trigger rules.
        """
        batch = list(tasks)
        with self._lock:
            if self._closed:
                raise TaskloomError(f"run {self.id} is closed")
            known = self.tasks
            for t in batch:
                have = known.get(t.name)
                if have is t:
                    raise TaskloomError(
                        f"task {t.name!r} is already in run {self.id}: run it again in a new run"
                    )
                if have is not None:
                    raise DuplicateTaskError(t.name)
                if t._status not in TERMINAL and t._run is not None and not t._run._closed:
                    raise TaskloomError(f"task {t.name!r} is active in another run")
            validate_tasks(batch, known=known)
            flags, fast = self._flags, self.plugins.fast
            for t in batch:
                if t.options:
                    self.plugins.check_task_options(t)
                    if flags.task_prepare:
                        fast["taskloom_task_prepare"](t, self)
            # Tasks whose body takes no arguments and that have no wrappers share one plan
            # per body and executor: a plan per task is 80 bytes times 100,000 tasks.
            shared: dict[tuple[Any, Executor], Plan] = {}
            for t in batch:
                wrappers: Sequence[Any] = ()
                if flags.task_wrappers:
                    wrappers = fast["taskloom_task_wrappers"](t, self) or ()
                executor = self._executor_for(t)
                fn = t.fn
                if wrappers or type(t).execute is not Task.execute or (
                    fn is not None and (_signature(fn)[0] or _signature(fn)[1])
                ):
                    t._plan = Plan(t, wrappers, executor)
                    continue
                key = (fn, executor)
                plan = shared.get(key)
                if plan is None:
                    plan = shared[key] = Plan(t, wrappers, executor)
                t._plan = plan
            for t in batch:
                t._run = self
                t._dependents = []
                known[t.name] = t
                # Finished in an earlier run: back to pending (and its old outcome gone)
                # before any dependent looks at its state.
                if t._status in TERMINAL or t._status is RETRYING:
                    self._set(t, PENDING)
                    t._reset_outcome()
            for t in batch:
                for dep in dict.fromkeys(t.dependencies):
                    known[dep]._dependents.append(t)
            restored = {**self._restored, **restored} if restored else self._restored
            skip = frozenset(skipped)
            recorded_failures = {**self._failed, **failed} if failed else self._failed
            for t in batch:
                self._admit(t, restored, skip, recorded_failures)
            if self._open:
                self._idle.clear()
            if self._started:
                self._dispatch()

    def restore(
        self,
        results: Mapping[str, Any],
        failed: Mapping[str, tuple[str, str | None]] | None = None,
    ) -> None:
        """Outcomes recorded by an earlier session of this run (resume): a task added later
        under one of these names starts ``completed`` with the recorded result, or ``failed``
        with the recorded ``(error, error type)``, without an attempt."""
        with self._lock:
            self._restored.update(results)
            self._failed.update(failed or {})

    def start(self) -> None:
        """Start executing (idempotent). Fires ``taskloom_run_start``."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._t0 = time.monotonic()
            self.started_at = datetime.now(timezone.utc)
            for ex in self.executors().values():
                ex.start(self)
        if self._store is not None:
            try:
                self._store.record_run_start(self)
            except Exception as exc:
                self._store_failed(exc)
        self.hook.taskloom_run_start(run=self)
        with self._lock:
            self._dispatch()

    def wait(self, timeout: float | None = None, tasks: Iterable[Task] | None = None) -> bool:
        """Wait until every task (or the given ones) is final; False on timeout."""
        if not self._started:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for ex in self.executors().values():
            ex.drive(self, timeout)
        if tasks is None:
            return self._idle.wait(timeout)
        for t in tasks:
            while t._status not in TERMINAL:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                with self._task_done:
                    if t._status in TERMINAL:
                        break
                    self._task_done.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every attempt handed to an executor has returned (even cancelled or
        timed-out ones still running in a worker); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._task_done:
            while self._inflight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._task_done.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    @functools.cached_property
    def _task_done(self) -> threading.Condition:
        return threading.Condition(self._lock)

    def cancel(self) -> None:
        """Cancel the run: nothing new starts; running attempts get their token cancelled."""
        with self._lock:
            self._cancelling = True
            self._queue.clear()
            for t in list(self.tasks.values()):
                if t._status not in TERMINAL:
                    self._cancel_locked(t, "run cancelled")

    def interrupt(self, reason: str) -> None:
        """Mark the run stopped from outside (``reason``: ``SIGINT``...): unless every task
        completes it closes ``interrupted``, and stores record the reason."""
        self.interrupted = reason

    def cancel_task(self, task: Task) -> None:
        with self._lock:
            if task._status not in TERMINAL:
                self._cancel_locked(task, "cancelled")

    def fail_attempt(self, attempt: Attempt, error: BaseException) -> bool:
        """Fail a running attempt from outside its worker (a soft timeout).

        The task moves on at once (retry or failure, as the policies decide); the worker's
        eventual return is discarded and reported by ``taskloom_task_overrun``. Returns False
        when the attempt had already ended.
        """
        task = attempt.task
        if task._attempt is not attempt or task._status is not RUNNING:
            return False
        decision = self._decide(attempt, error)
        with self._lock:
            if task._attempt is not attempt or task._status is not RUNNING:
                return False
            attempt.finished = self.clock.monotonic()
            attempt.token.cancel("timeout")
            task._attempt = None
            task._plan.executor.cancel(attempt)
            self._apply_failure(task, error, decision)
            self._dispatch()
        return True

    def close(self) -> RunSummary:
        """Finish the run: shut executors down, fire ``taskloom_run_finish``, summarise."""
        with self._lock:
            if self._summary is not None:
                return self._summary
            self._closed = True
            summary = self._summarise()
            self._summary = summary
        for ex in self.executors().values():
            ex.shutdown(wait=self._inflight == 0)
        if self._store is not None:
            try:
                self._store.record_run_finish(self, summary)
            except Exception as exc:
                self._store_failed(exc)
            if self.store_error is not None:
                summary.status = "failed"
                summary.store_error = self.store_error
        self.hook.taskloom_run_finish(run=self, summary=summary)
        return summary

    def _store_failed(self, exc: BaseException) -> None:
        """The store could not record: the run fails (the first cause is kept)."""
        from taskloom.kernel.store import store_failure

        message = store_failure(self._store, exc)
        if self.store_error is None:
            log.error("run %s: %s", self.id, message)
            self.store_error = message

    def summary(self) -> RunSummary:
        with self._lock:
            return self._summary or self._summarise()

    # -- internals: state -------------------------------------------------------------------
    def _set(self, task: Task, new: TaskState) -> None:
        old = task._status
        if new not in TRANSITIONS[old]:
            check_transition(task.name, old, new)
        task._status = new
        if self._store_transition is not None:
            self._store_transition(task, old, new, self)
        if self._flags.transition:
            self.plugins.fast["taskloom_task_transition"](task, old, new, self)

    def _admit(
        self, task: Task, restored: Mapping[str, Any], skip: frozenset[str] = frozenset(),
        failed: Mapping[str, tuple[str, str | None]] | None = None,
    ) -> None:
        self._open += 1
        if task.name in skip:
            self._set(task, SKIPPED)
        elif task.name in restored:
            # Resume: the result was recorded by an earlier session; no attempt is made.
            task.result = restored[task.name]
            self._set(task, COMPLETED)
        elif failed and task.name in failed:
            task.error, task.error_type = failed[task.name]
            self._set(task, FAILED)
        else:
            self._admit_state(task)
            return
        self._terminal(task)

    def _admit_state(self, task: Task) -> None:
        deps = task.dependencies
        if not deps:
            self._set(task, READY)
            self._push(task)
            return
        self._set(task, WAITING)
        tasks = self.tasks
        unique = dict.fromkeys(deps)
        task._waiting_on = len(unique)
        for dep in unique:
            up = tasks[dep]
            if up._status in TERMINAL:
                self._dep_done(task, up)
                if task._status is not WAITING:
                    return

    def _push(self, task: Task) -> None:
        self._seq += 1
        task._seq = self._seq
        self._queue.push(task)

    def _terminal(self, task: Task, stack: list[Task] | None = None) -> None:
        """Bookkeeping once ``task`` reached a final state, then release its dependents.

        Inside a release loop (``stack`` given) the task is pushed for that loop to release,
        so long failure cascades need no recursion.
        """
        self._open -= 1
        task._completed = time.time()
        if task._started is not None:
            task.duration = task._completed - task._started
        if "_task_done" in self.__dict__:
            self._task_done.notify_all()
        if stack is not None:
            stack.append(task)
            return
        stack = [task]
        while stack:
            up = stack.pop()
            for d in up._dependents:
                if d._status is WAITING:
                    self._dep_done(d, up, stack)
        if self._open == 0:
            self._idle.set()

    def _dep_done(self, task: Task, up: Task, stack: list[Task] | None = None) -> None:
        """``up`` (a dependency of waiting ``task``) is final: apply the trigger rule."""
        task._waiting_on -= 1
        state = up._status
        rule = task.trigger_rule
        if rule == "all_success":
            if state is not COMPLETED:
                if state is SKIPPED:
                    self._finish_without_run(task, SKIPPED, None, stack)
                elif state is CANCELLED:
                    err = UpstreamFailed(task.name, up.name, "was cancelled")
                    self._finish_without_run(task, CANCELLED, err, stack)
                else:
                    err = UpstreamFailed(task.name, up.name, "failed")
                    self._finish_without_run(task, FAILED, err, stack)
                return
        elif rule == "one_failed":
            if state is FAILED:
                self._make_ready(task)
                return
            if task._waiting_on == 0:
                self._finish_without_run(task, SKIPPED, None, stack)
            return
        if task._waiting_on == 0:
            self._make_ready(task)

    def _make_ready(self, task: Task) -> None:
        self._set(task, READY)
        self._push(task)

    def _finish_without_run(
        self, task: Task, state: TaskState, error: BaseException | None,
        stack: list[Task] | None,
    ) -> None:
        # The error is recorded first so transition observers see why the task ended.
        if error is not None:
            self._record_error(task, error)
        self._set(task, state)
        self._terminal(task, stack)

    @staticmethod
    def _record_error(task: Task, error: BaseException) -> None:
        task.exception = error
        task.error = str(error) or type(error).__name__
        task.error_type = type(error).__name__

    def _cancel_locked(self, task: Task, reason: str) -> None:
        if task._status is RUNNING:
            attempt = task._attempt
            if attempt is not None:
                attempt.token.cancel(reason)
                task._plan.executor.cancel(attempt)
                task._attempt = None
        self._record_error(task, TaskCancelled(f"task {task.name!r} {reason}"))
        self._set(task, CANCELLED)
        self._terminal(task)

    # -- internals: dispatch and completion ----------------------------------------------------
    def _dispatch(self) -> None:
        """Start ready tasks while there is room. Called with the lock held."""
        if not self._started or self._cancelling:
            return
        if self._limiter is not None:
            self._dispatch_limited(self._limiter)
            return
        queue = self._queue
        while self._inflight < self._max_inflight and queue:
            task = queue.pop()
            status = task._status
            if status is not READY and status is not RETRYING:
                continue  # cancelled while queued
            self._start(task)

    def _dispatch_limited(self, limiter: Limiter) -> None:
        """``_dispatch`` under per-tag limits: tasks woken by a freed slot go before the queue."""
        queue, woken = self._queue, limiter.woken
        while self._inflight < self._max_inflight:
            if woken:
                task = woken.popleft()
            elif queue:
                task = queue.pop()
            else:
                return
            status = task._status
            if status is not READY and status is not RETRYING:
                limiter.discard(task)  # cancelled while waiting: pass on what it held
                continue
            verdict = limiter.admit(task)
            if verdict is True:
                self._start(task)
            elif verdict is not False:  # seconds until a rate limit allows it
                self.clock.call_later(float(verdict), functools.partial(self._requeue, task))

    def _start(self, task: Task) -> None:
        self._set(task, RUNNING)
        task.attempts += 1
        attempt = Attempt(task, task.attempts, self)
        task._attempt = attempt
        if task._started is None:
            task._started = time.time()
        attempt.started = self.clock.monotonic()
        self._inflight += 1
        task._plan.executor.submit(attempt)

    def _requeue(self, task: Task) -> None:
        with self._lock:
            if task._status is READY or task._status is RETRYING:
                self._push(task)
                self._dispatch()
            elif self._limiter is not None:
                self._limiter.discard(task)

    def _decide(self, attempt: Attempt, error: BaseException) -> Any:
        if self._cancelling:
            return None
        if self._flags.attempt_failed:
            self.plugins.fast["taskloom_attempt_failed"](attempt.task, error, attempt, self)
        if not self._flags.task_error:
            return None
        try:
            return self.hook.taskloom_task_error(
                task=attempt.task, error=error, attempt=attempt, run=self
            )
        except Exception as exc:  # a policy plugin failed: fail the task, name the plugin
            return Fail(exc if isinstance(exc, PluginError) else PluginError(str(exc)))

    def _on_done(self, attempt: Attempt, value: Any, error: BaseException | None) -> None:
        task = attempt.task
        current = task._attempt is attempt
        attempt.finished = self.clock.monotonic()
        attempt.value = value
        decision = self._decide(attempt, error) if error is not None and current else None
        if self._flags.attempt_finish and current:
            self.plugins.fast["taskloom_attempt_finish"](task, attempt, error, self)
        unrecorded: BaseException | None = None
        if error is None and current and self._store_commit is not None:
            try:
                self._store_commit(task, attempt, self)
            except Exception as exc:
                unrecorded = exc
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0 and "_task_done" in self.__dict__:
                self._task_done.notify_all()
            if self._limiter is not None:
                self._limiter.release(task)
            if task._attempt is not attempt or task._status is not RUNNING:
                self.hook.taskloom_task_overrun(task=task, attempt=attempt, run=self)
            else:
                task._attempt = None
                if unrecorded is not None:
                    self._unrecorded(task, unrecorded)
                elif error is None:
                    task.result = value
                    self._set(task, COMPLETED)
                    self._terminal(task)
                else:
                    self._apply_failure(task, error, decision)
            self._dispatch()

    def _unrecorded(self, task: Task, exc: BaseException) -> None:
        """The store could not commit ``task``'s result: the task is not completed (a resume
        runs it again) and the run stops starting tasks. Called with the lock held."""
        self._store_failed(exc)
        self._record_error(task, StoreFailure(f"result not recorded: {self.store_error}"))
        self._set(task, CANCELLED)
        self._terminal(task)
        self.cancel()

    def _apply_failure(self, task: Task, error: BaseException, decision: Any) -> None:
        if isinstance(decision, Fallback):
            task.result = decision.value
            self._record_error(task, error)  # kept for inspection; the task completed
            self._set(task, COMPLETED)
            self._terminal(task)
            return
        if isinstance(decision, Retry) and not self._cancelling:
            self._record_error(task, error)
            self._set(task, RETRYING)
            if decision.delay > 0:
                self.clock.call_later(decision.delay, functools.partial(self._requeue, task))
            else:
                self._push(task)
            return
        if isinstance(decision, Fail) and decision.error is not None:
            error = decision.error
        self._record_error(task, error)
        import traceback  # only failures pay for it

        task.error_traceback = "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
        self._set(task, FAILED)
        self._terminal(task)

    def executor_for(self, task: Task) -> Executor:
        """The executor that runs ``task``'s attempts in this run."""
        with self._lock:
            return self._executor_for(task)

    def _executor_for(self, task: Task) -> Executor:
        name = task.options.get("executor") if task.options else None
        if name is None or name == self._default_executor.name:
            return self._default_executor
        ex = self._executors.get(name)
        if ex is None:
            ex = self.engine.create_executor(name)
            self._executors[name] = ex
            if self._started:
                ex.start(self)
        return ex

    def _summarise(self) -> RunSummary:
        counts: dict[str, int] = {}
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, t in self.tasks.items():
            counts[t._status.value] = counts.get(t._status.value, 0) + 1
            if t._status is COMPLETED:
                results[name] = t.result
            elif t.error is not None:
                errors[name] = t.error
        if self.store_error is not None:
            status = "failed"
        elif self._cancelling or counts.get("failed") or counts.get("cancelled"):
            status = "interrupted" if self.interrupted else (
                "cancelled" if self._cancelling else "failed")
        elif self._open:
            status = "running"
        else:
            status = "completed"
        self.finished_at = datetime.now(timezone.utc)
        return RunSummary(
            id=self.id,
            name=self.name,
            status=status,
            counts=counts,
            results=results,
            errors=errors,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration=(time.monotonic() - self._t0) if self._started else 0.0,
            tasks=list(self.tasks.values()),
            trigger=self.trigger,
            parent_id=self.parent_id,
        )


class Engine:
    """Runs tasks. Holds the plugin set, the settings and the clock; each run is a :class:`Run`.

    ``queue``: queue strategy name (``priority`` default). ``executor``: executor name
    (``thread`` default) and ``executor_options`` its options; ``max_workers`` is a shortcut
    for ``executor_options["max_workers"]``. ``executors`` gives options for executors that
    tasks ask for by name. ``limits``/``rate_limits``: per-tag concurrency (``{"db": 2}``)
    and start rates (``{"api": (10, 1.0)}``: 10 starts a second).

    ``store``: where runs are recorded (``memory`` default, ``sqlite``, ``none``; or the
    config's ``store``), ``store_options`` its options. With a store, a run id is an idempotency key
    (:meth:`run`) and a recorded run can be resumed (:meth:`resume`).
    """

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        queue: str = "priority",
        executor: str = "thread",
        executor_options: Mapping[str, Any] | None = None,
        executors: Mapping[str, Mapping[str, Any]] | None = None,
        limits: Mapping[str, int] | None = None,
        rate_limits: Mapping[str, Any] | None = None,
        plugins: PluginSet | None = None,
        config: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        store: str | None = None,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        if plugins is None:
            from taskloom.kernel.pluginmanager import load_plugins

            plugins = load_plugins(config=config)
        self.plugins = plugins
        self.clock: Clock = clock or system_clock()
        self.queue_name = queue
        self.executor_name = executor
        self.executor_options = dict(executor_options or {})
        if max_workers is not None:
            self.executor_options["max_workers"] = max_workers
        self.executors_options = {k: dict(v) for k, v in (executors or {}).items()}
        # Checked by the limiter component when it is built (below), not here.
        self.limits: Any = {} if limits is None else limits
        self.rate_limits: Any = {} if rate_limits is None else rate_limits
        # Fail fast on unknown names and bad options, before any run.
        plugins.registry.get("queue", queue)
        self.create_executor(None).shutdown()
        self.create_limiter()
        self.store: Any = self._create_store(store, store_options, config or {})
        self.claim_options = {k: v for k, v in (config or {}).items()
                              if k in ("on_conflict", "max_active_runs", "on_limit")}

    def _create_store(
        self, name: str | None, options: Mapping[str, Any] | None, config: Mapping[str, Any]
    ) -> Any:
        if name is None:
            name = config.get("store")
        if options is None:
            options = config.get("store_options") or {}
        registry = self.plugins.registry
        if name == "none":
            return None
        if name is None:
            if ("store", "memory") not in registry:  # a plugin set without the stores plugin
                return None
            name = "memory"
        # Not registered as a plugin: the run calls it directly (kernel/store.py).
        return registry.create("store", name, **dict(options))

    def close(self) -> None:
        """Release the store (commit what it has queued); the engine runs nothing after."""
        store, self.store = self.store, None
        if store is not None:
            store.close()

    def create_queue(self) -> Any:
        return self.plugins.registry.create("queue", self.queue_name)

    def create_executor(self, name: str | None) -> Executor:
        if name is None:
            name, options = self.executor_name, self.executor_options
        else:
            options = self.executors_options.get(name, {})
        ex = self.plugins.registry.create("executor", name, **options)
        if not isinstance(ex, Executor):
            raise PluginError(f"executor {name!r} is not a taskloom.Executor")
        return ex

    def create_limiter(self) -> Limiter | None:
        """The per-tag limiter component (kind ``limiter``), or None when nothing is limited."""
        if all(isinstance(t, Mapping) and not t for t in (self.limits, self.rate_limits)):
            return None
        limiter: Limiter = self.plugins.registry.create(
            "limiter", "tags", limits=self.limits, rate_limits=self.rate_limits, clock=self.clock
        )
        return limiter

    def open_run(
        self,
        *,
        run_id: str | None = None,
        name: str | None = None,
        data: Mapping[str, Any] | None = None,
        trigger: str | None = None,
        parent_id: str | None = None,
    ) -> Run:
        """A new run of this engine: add tasks, :meth:`Run.start`, :meth:`Run.wait`,
        :meth:`Run.close`. ``trigger`` says what started it (:data:`TRIGGERS`),
        ``parent_id`` the run it continues; both are recorded by the store."""
        return Run(self, run_id=run_id, name=name, data=data, trigger=trigger,
                   parent_id=parent_id)

    def run(
        self,
        tasks: Iterable[Task],
        *,
        run_id: str | None = None,
        name: str | None = None,
        data: Mapping[str, Any] | None = None,
        restored: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        trigger: str | None = "api",
        on_conflict: str | None = None,
    ) -> RunSummary:
        """Run ``tasks`` to completion and return the summary (``trigger``: what started
        it, recorded by the store).

        The graph is validated first (duplicate names, unknown dependencies, cycles).
        With ``timeout``, a run still going after that many seconds is cancelled.

        ``run_id`` is an idempotency key when the engine has a store: a run the store has
        recorded as completed is not run again (its stored summary is returned), and one
        recorded as unfinished is resumed (:meth:`resume`), each claimed first (:meth:`claim`).
        """
        run_id, release = self.claim(run_id, name, on_conflict)
        try:
            if run_id is not None and self.store is not None and restored is None:
                recorded = self.store.summary(run_id)
                if recorded is not None:
                    if recorded["status"] == "completed":
                        return RunSummary(**recorded)
                    return self.resume(run_id, tasks, name=name, data=data, timeout=timeout)
            run = self.open_run(run_id=run_id, name=name, data=data, trigger=trigger)
            return self._execute(run, tasks, restored, None, timeout)
        finally:
            release()

    def claim(self, run_id: str | None, name: str | None, on_conflict: str | None = None,
              **overrides: Any) -> tuple[str | None, Callable[[], None]]:
        """Claim ``run_id`` and a place under ``max_active_runs`` of workflow ``name`` in the
        store: ``(run id, release)``. docs/stores.md: ``on_conflict``, ``on_limit``;
        ``overrides`` replace the engine's claim settings (None values are ignored)."""
        overrides["on_conflict"] = on_conflict
        options = dict(self.claim_options, **{k: v for k, v in overrides.items() if v is not None})
        claim_run = getattr(self.store, "claim_run", None)
        if claim_run is None or (run_id is None and not options.get("max_active_runs")):
            return run_id, lambda: None
        run_id = run_id or uuid.uuid4().hex[:12]
        return run_id, claim_run(run_id, name, **options)

    def resume(
        self,
        run_id: str,
        tasks: Iterable[Task],
        *,
        retry_failed: bool = False,
        name: str | None = None,
        data: Mapping[str, Any] | None = None,
        timeout: float | None = None, on_conflict: str | None = None,
    ) -> RunSummary:
        """Finish a recorded run (claimed first): only what did not complete runs again.

        ``tasks`` is the run's workflow, rebuilt. A task recorded as completed (result stored)
        keeps that result; one running when its process died runs again (at-least-once); a
        failed one stays failed unless ``retry_failed``. A completed run is returned as is.
        """
        _, release = self.claim(run_id, name or self.recorded(run_id).name, on_conflict)
        try:
            recorded = self.recorded(run_id)
            if recorded.status == "completed":
                return recorded
            run = self.open_resumed_run(run_id, retry_failed=retry_failed,
                                        name=name or recorded.name, data=data)
            return self._execute(run, tasks, None, None, timeout)
        finally:
            release()

    def recorded(self, run_id: str) -> RunSummary:
        """The store's summary of a recorded run (``TaskloomError`` when there is none)."""
        store = self.store
        if store is None:
            raise TaskloomError("recorded runs need an engine with a store (Engine(store=...))")
        recorded = store.summary(run_id)
        if recorded is None:
            raise TaskloomError(f"no recorded run {run_id!r}")
        return RunSummary(**recorded)

    def open_resumed_run(
        self,
        run_id: str,
        *,
        retry_failed: bool = False,
        name: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Run:
        """A run with the id of a recorded one whose recorded outcomes are restored
        (:meth:`Run.restore`): add the workflow's tasks to it to finish the run."""
        store = self.store
        if store is None:
            raise TaskloomError("resume needs an engine with a store (Engine(store=...))")
        restored: dict[str, Any] = {}
        failed: dict[str, tuple[str, str | None]] = {}
        for task_name, (state, stored, result, error, error_type) in store.outcomes(
            run_id
        ).items():
            if state == "completed" and stored:
                restored[task_name] = result
            elif state == "failed" and not retry_failed:
                failed[task_name] = (error or "failed", error_type)
        run = self.open_run(run_id=run_id, name=name, data=data, trigger="resume")
        run.restore(restored, failed)
        return run

    def _execute(
        self,
        run: Run,
        tasks: Iterable[Task],
        restored: Mapping[str, Any] | None,
        failed: Mapping[str, tuple[str, str | None]] | None,
        timeout: float | None,
    ) -> RunSummary:
        try:
            run.add(tasks, restored=restored, failed=failed)
            run.start()
            if not run.wait(timeout):
                run.cancel()
                run.wait()
        except BaseException:
            run.cancel()
            run.close()
            raise
        return run.close()
