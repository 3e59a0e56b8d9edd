"""The run and its hot path: its public API, dispatch and completion under the run's lock.

A worker that finishes a task takes the lock once, records the outcome, releases dependents
and hands itself the next ready task (no hand-off). Hooks nobody implements are not called.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from taskloom.kernel import recording
from taskloom.kernel.admission import admit, cancel_locked, join, record_error, terminal
from taskloom.kernel.attempt import Attempt
from taskloom.kernel.clock import Clock
from taskloom.kernel.decisions import Fail, Fallback, Retry
from taskloom.kernel.errors import PluginError, StoreFailure, TaskloomError
from taskloom.kernel.executor import Executor
from taskloom.kernel.limiter import Limiter
from taskloom.kernel.recording import TRIGGERS, ResultsView, RunSummary
from taskloom.kernel.stash import Stash
from taskloom.kernel.states import TERMINAL, TRANSITIONS, TaskState, check_transition
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.engine import Engine

READY, RUNNING, COMPLETED = TaskState.READY, TaskState.RUNNING, TaskState.COMPLETED
FAILED, RETRYING, CANCELLED = TaskState.FAILED, TaskState.RETRYING, TaskState.CANCELLED


class Run:
    """A set of tasks being executed. Built by :meth:`Engine.open_run` or :meth:`Engine.run`.

    A run stays open for more tasks until :meth:`close` (``TaskManager`` keeps one open).
    """

    def __init__(
        self, engine: Engine, *, run_id: str | None = None, name: str | None = None,
        data: Mapping[str, Any] | None = None, trigger: str | None = None,
        parent_id: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        if trigger is not None and trigger not in TRIGGERS:
            raise TaskloomError(
                f"run trigger {trigger!r} is not one of {', '.join(sorted(TRIGGERS))}"
            )
        self.engine = engine
        import uuid  # per run, not per task; loading the engine skips uuid (and platform)
        self.id = run_id or uuid.uuid4().hex[:12]
        self.name = name
        #: What started the run (:data:`TRIGGERS`), recorded by the store.
        self.trigger = trigger
        #: The run this one continues (a resume, a child run).
        self.parent_id = parent_id
        self.data: dict[str, Any] = dict(data or {})
        self.params: dict[str, Any] = dict(params or {})  # context.params, recorded
        self.plugins = engine.plugins
        self.stash = Stash()  # plugins' typed per-run state
        self.hook = engine.plugins.hook
        self._flags = engine.plugins.flags
        self.clock: Clock = engine.clock
        self._monotonic = engine.clock.monotonic
        self.tasks: dict[str, Task] = {}
        self.results = ResultsView(self.tasks)
        self._lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()
        self._queue = engine.create_queue()
        self._limiter = engine.create_limiter()
        self._executors: dict[str, Executor] = {}
        self._wrappers: tuple[Any, ...] | None = None  # taskloom_run_wrappers'
        self._default_executor = engine.create_executor(None)
        self._max_inflight = self._default_executor.max_workers
        self._inflight = 0
        self._open = 0
        self._queued = 0  # tasks in the queue: a count the hot path reads without a call
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
        return self._queued

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
        self, tasks: Iterable[Task], restored: Mapping[str, Any] | None = None,
        skipped: Iterable[str] = (), failed: Mapping[str, tuple[str, str | None]] | None = None,
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
            join(self, batch)
            restored = {**self._restored, **restored} if restored else self._restored
            skip = frozenset(skipped)
            recorded_failures = {**self._failed, **failed} if failed else self._failed
            for t in batch:
                admit(self, t, restored, skip, recorded_failures)
            if self._open:
                self._idle.clear()
            if self._started:
                self._dispatch()

    def restore(
        self, results: Mapping[str, Any], failed: Mapping[str, tuple[str, str | None]] | None = None
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
        recording.record_start(self)
        self.hook.taskloom_run_start(run=self)
        with self._lock:
            self._dispatch()

    def wait(self, timeout: float | None = None, tasks: Iterable[Task] | None = None) -> bool:
        """Wait until every task (or the given ones) is final; False on timeout."""
        if not self._started:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for ex in self.executors().values():
            if tasks is None or not ex.drive_optional:
                ex.drive(self, timeout)
        if tasks is None:
            return self._idle.wait(None if deadline is None else deadline - time.monotonic())
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
            self._queued = 0
            for t in list(self.tasks.values()):
                if t._status not in TERMINAL:
                    cancel_locked(self, t, "run cancelled")

    def interrupt(self, reason: str) -> None:
        """Mark the run stopped from outside (``reason``: ``SIGINT``...): unless every task
        completes it closes ``interrupted``, and stores record the reason."""
        self.interrupted = reason

    def cancel_task(self, task: Task) -> None:
        with self._lock:
            if task._status not in TERMINAL:
                cancel_locked(self, task, "cancelled")

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
            summary = self._summary = recording.summarise(self)
        for ex in self.executors().values():
            ex.shutdown(wait=self._inflight == 0)
        recording.record_finish(self, summary)
        self.hook.taskloom_run_finish(run=self, summary=summary)
        return summary

    def summary(self) -> RunSummary:
        with self._lock:
            return self._summary or recording.summarise(self)

    def executor_for(self, task: Task) -> Executor:
        """The executor that runs ``task``'s attempts in this run."""
        with self._lock:
            return self._executor_for(task)

    # -- internals: state, dispatch and completion (the lock is held) ----------------------------
    def _set(self, task: Task, new: TaskState) -> None:
        old = task._status
        if new not in TRANSITIONS[old]:
            check_transition(task.name, old, new)
        task._status = new
        if self._store_transition is not None:
            self._store_transition(task, old, new, self)
        if self._flags.transition:
            self.plugins.fast["taskloom_task_transition"](task, old, new, self)

    def _push(self, task: Task) -> None:
        self._queued += 1
        self._queue.push(task)

    def _dispatch(self) -> None:
        """Start ready tasks while there is room."""
        if not self._started or self._cancelling:
            return
        if self._limiter is not None:
            self._dispatch_limited(self._limiter)
            return
        queue, limit = self._queue, self._max_inflight
        while self._inflight < limit and self._queued:
            task = queue.pop()
            self._queued -= 1
            status = task._status
            if status is READY or status is RETRYING:  # else cancelled while queued
                self._start(task)

    def _dispatch_limited(self, limiter: Limiter) -> None:
        """``_dispatch`` under per-tag limits: tasks woken by a freed slot go before the queue."""
        queue, woken = self._queue, limiter.woken
        while self._inflight < self._max_inflight:
            if woken:
                task = woken.popleft()
            elif self._queued:
                task = queue.pop()
                self._queued -= 1
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
        old, task._status = task._status, RUNNING  # from ready or retrying: always allowed
        if self._store_transition is not None:
            self._store_transition(task, old, RUNNING, self)
        if self._flags.transition:
            self.plugins.fast["taskloom_task_transition"](task, old, RUNNING, self)
        task.attempts += 1
        task._attempt = attempt = Attempt(task, task.attempts, self)
        if task._started is None:
            task._started = time.time()
        attempt.started = self._monotonic()
        executor = attempt.plan.executor
        self._inflight += executor.holds_worker
        executor.submit(attempt)

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
        attempt.finished = self._monotonic()
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
            self._inflight -= attempt.plan.executor.holds_worker
            if self._inflight == 0 and "_task_done" in self.__dict__:
                self._task_done.notify_all()
            if self._limiter is not None:
                self._limiter.release(task)
            if task._attempt is not attempt or task._status is not RUNNING:
                self.hook.taskloom_task_overrun(task=task, attempt=attempt, run=self)
            elif error is None and unrecorded is None:
                task._attempt = None
                task.result = value
                self._set(task, COMPLETED)
                terminal(self, task)
            else:
                task._attempt = None
                if unrecorded is not None:
                    self._unrecorded(task, unrecorded)
                else:
                    self._apply_failure(task, error, decision)  # type: ignore[arg-type]
            if self._queued or self._limiter is not None:
                self._dispatch()

    def _unrecorded(self, task: Task, exc: BaseException) -> None:
        """The store could not commit ``task``'s result: the task is not completed (a resume
        runs it again) and the run stops starting tasks."""
        recording.store_failed(self, exc)
        record_error(task, StoreFailure(f"result not recorded: {self.store_error}"))
        self._set(task, CANCELLED)
        terminal(self, task)
        self.cancel()

    def _apply_failure(self, task: Task, error: BaseException, decision: Any) -> None:
        if isinstance(decision, Fallback):
            task.result = decision.value
            record_error(task, error)  # kept for inspection; the task completed
            self._set(task, COMPLETED)
            terminal(self, task)
            return
        if isinstance(decision, Retry) and not self._cancelling:
            record_error(task, error)
            self._set(task, RETRYING)
            if decision.delay > 0:
                self.clock.call_later(decision.delay, functools.partial(self._requeue, task))
            else:
                self._push(task)
            return
        if isinstance(decision, Fail) and decision.error is not None:
            error = decision.error
        record_error(task, error)
        import traceback  # only failures pay for it

        task.error_traceback = "".join(
            traceback.format_exception(type(error), error, error.__traceback__)
        )
        self._set(task, FAILED)
        terminal(self, task)

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
