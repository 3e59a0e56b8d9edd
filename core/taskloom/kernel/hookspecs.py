"""Every hook taskloom calls. All of them, documented, in one place.

Plugins implement hooks with :data:`taskloom.hookimpl`::

    from taskloom import hookimpl

    @hookimpl
    def taskloom_task_transition(task, old, new, run):
        ...

Kinds of hook:

* **registration/configuration** (``taskloom_register``, ``taskloom_configure``): called once
  when a plugin set is built or configured.
* **observers** (``taskloom_run_*``, ``taskloom_task_transition``, ``taskloom_attempt_finish``,
  ``taskloom_task_overrun``, ``taskloom_schedule_*``, ``taskloom_circuit_change``): return
  values are ignored. A plugin that raises in an observer is logged with its name and the run
  goes on.
* **policies** (``taskloom_task_prepare``, ``taskloom_task_wrappers``, ``taskloom_task_error``):
  their result changes what happens to a task. A plugin that raises there fails that task with
  a :class:`~taskloom.kernel.errors.PluginError` naming the plugin.

Hooks that no plugin implements are not called at all on the engine's per-task path.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("taskloom")

#: Observer hooks: failures are logged and swallowed, never fail a task or a run.
OBSERVER_HOOKS = frozenset({
    "taskloom_run_start",
    "taskloom_run_finish",
    "taskloom_task_transition",
    "taskloom_attempt_finish",
    "taskloom_attempt_output",
    "taskloom_task_overrun",
    "taskloom_schedule_fire",
    "taskloom_schedule_misfire",
    "taskloom_schedule_overlap",
    "taskloom_circuit_change",
})

#: Policy hooks: a failure fails the task, with an error naming the plugin.
POLICY_HOOKS = frozenset({
    "taskloom_task_prepare",
    "taskloom_task_wrappers",
    "taskloom_task_error",
})


@hookspec
def taskloom_register(registry: Any) -> None:
    """Register named components.

    When: once, right after a plugin set (one per engine or manager) has loaded its plugins.

    ``registry``: a :class:`taskloom.kernel.registry.Registry`. Call
    ``registry.add(kind, name, factory)`` with ``kind`` one of ``queue``, ``executor``,
    ``trigger``, ``policy``, ``store``, ``exporter``. The factory is called with keyword
    options when a run or scheduler selects the component by name.

    Return: ignored. Registering a name another plugin already registered for that kind is a
    :class:`~taskloom.kernel.errors.PluginError` naming both plugins.
    """


@hookspec(historic=True)
def taskloom_configure(config: Any) -> None:
    """Read configuration.

    When: once per plugin set, when its configuration is known (the TOML ``[taskloom]``
    table, or ``{}`` for a library user who gave none). Historic: a plugin registered later
    is called at once with the same configuration.

    ``config``: a read-only mapping of the whole ``[taskloom]`` table; a plugin reads its own
    section (``config.get("otel", {})``).

    Return: ignored. Raise :class:`~taskloom.kernel.errors.ConfigError` for a bad section.
    """


@hookspec
def taskloom_run_start(run: Any) -> None:
    """A run is starting.

    When: once per run, after validation and before the first task is queued.

    ``run``: the :class:`taskloom.kernel.engine.Run` (``run.id``, ``run.name``, ``run.tasks``).

    Return: ignored (observer).
    """


@hookspec
def taskloom_run_finish(run: Any, summary: Any) -> None:
    """A run has finished.

    When: once per run, when every task is in a final state (or the run was closed).

    ``run``: the run. ``summary``: its :class:`taskloom.kernel.engine.RunSummary` (status, counts,
    results, errors, duration).

    Return: ignored (observer).
    """


@hookspec
def taskloom_task_prepare(task: Any, run: Any) -> None:
    """Validate a task's plugin options before the run starts.

    When: once per task as it is added to a run, before anything runs, and only for tasks
    that carry options (``task.options`` not empty).

    ``task``: the task. ``run``: the run it joins.

    Return: ignored. Raise :class:`~taskloom.kernel.errors.ConfigError` naming the task and the key
    (``task 'load': retry.max_retries must be >= 0``) to reject the whole run before it
    starts.
    """


@hookspec
def taskloom_task_wrappers(task: Any, run: Any) -> Any:
    """Supply wrappers around a task's attempts (timeout, cache, breaker, tracing, ...).

    When: once per task as it is added to a run (not per attempt).

    ``task``: the task. ``run``: the run.

    Return: ``None`` when the plugin has nothing to wrap, else a wrapper: a callable
    ``wrapper(call, attempt) -> result`` that normally returns ``call()``; it may skip the
    call (a cache hit), raise instead (an open circuit), or observe it (a span). It runs where
    the attempt runs (a worker thread, the process executor's dispatcher thread, an event loop
    thread). A wrapper may also define ``async def acall(self, acall, attempt)`` used by the
    asyncio executor. The first plugin called (``tryfirst``) gives the outermost wrapper.
    """


@hookspec(firstresult=True)
def taskloom_task_error(task: Any, error: BaseException, attempt: Any, run: Any) -> Any:
    """Decide what happens after an attempt raised.

    When: each time an attempt fails (an exception, a timeout), before the task's state
    changes. First result wins.

    ``task``: the task. ``error``: the exception. ``attempt``: the
    :class:`taskloom.kernel.engine.Attempt` (``attempt.number`` counts from 1). ``run``: the run.

    Return: :class:`taskloom.Retry` (run again after ``delay`` seconds, on the engine's
    timer), :class:`taskloom.Fallback` (complete with ``value``), :class:`taskloom.Fail` (fail
    now, optionally with another ``error``), or ``None`` to leave the decision to the next
    plugin; when nobody decides, the task fails.
    """


@hookspec
def taskloom_task_transition(task: Any, old: Any, new: Any, run: Any) -> None:
    """A task changed state.

    When: on every state change of a task in a run, in order, exactly once per change.

    ``task``: the task (its ``status`` is already ``new``). ``old``, ``new``:
    :class:`taskloom.TaskState`. ``run``: the run, or ``None`` outside a run.

    Return: ignored (observer). Called under the run's lock: do not block.
    """


@hookspec
def taskloom_attempt_finish(task: Any, attempt: Any, error: BaseException | None, run: Any) -> None:
    """An attempt has ended.

    When: once per attempt, when its body returned or raised (or a wrapper decided), before
    the task's next state is chosen.

    ``task``: the task. ``attempt``: the :class:`taskloom.kernel.engine.Attempt` (``number``,
    ``started``, ``finished`` as monotonic seconds, ``duration``, ``value``). ``error``: the
    exception, or ``None`` on success. ``run``: the run.

    Return: ignored (observer).
    """


@hookspec
def taskloom_attempt_output(task: Any, attempt: Any, text: str, run: Any) -> None:
    """A running attempt's body printed or logged whole lines.

    When: an output-capturing plugin (such as ``capture``) saw them, as they are written, in
    the thread (or event loop) running the body; a line still open when the attempt ends is
    passed on then. Not called for bodies whose output is not captured (capture off, another
    process).

    ``task``, ``attempt``, ``run``: as for ``taskloom_attempt_finish``. ``text``: one or more
    complete lines, each ending in a newline.

    Return: ignored (observer). Keep it cheap: the body waits for it.
    """


@hookspec
def taskloom_task_overrun(task: Any, attempt: Any, run: Any) -> None:
    """An attempt that was already failed (timed out) or cancelled has finally returned.

    When: when the worker running a soft-timed-out or cancelled attempt gets control back;
    its result is discarded.

    ``task``, ``attempt``, ``run``: as for ``taskloom_attempt_finish``.

    Return: ignored (observer).
    """


@hookspec
def taskloom_schedule_fire(job: Any, scheduled_for: Any, fired_at: Any) -> None:
    """A scheduled job fired.

    When: each time the scheduler starts a job's run.

    ``job``: the scheduler's job (``job.id``, ``job.task``, ``job.trigger``).
    ``scheduled_for``: the aware datetime it was due. ``fired_at``: when it really started.

    Return: ignored (observer).
    """


@hookspec
def taskloom_schedule_misfire(job: Any, scheduled_for: Any, fired_at: Any) -> None:
    """A scheduled run was skipped because it was later than the job's misfire grace time.

    When: when the scheduler notices a due time that is too old to run.

    ``job``: the job. ``scheduled_for``: the missed due time. ``fired_at``: when it was
    noticed.

    Return: ignored (observer).
    """


@hookspec
def taskloom_schedule_overlap(job: Any, scheduled_for: Any, fired_at: Any, running: int) -> None:
    """A scheduled run was skipped because its job already had ``max_instances`` runs going.

    When: when the scheduler's background thread reaches a due time and finds that many runs
    of the job still in progress (``run_pending`` waits for one to end instead, and the
    missed runs of a catch-up wait for each other, so neither skips).

    ``job``: the job. ``scheduled_for``: the skipped due time (aware datetime).
    ``fired_at``: when the skip happened. ``running``: how many runs of the job were going.

    Return: ignored (observer).
    """


@hookspec
def taskloom_circuit_change(key: str, old: str, new: str, task: Any) -> None:
    """A circuit breaker changed state.

    When: on every breaker transition (``closed``, ``open``, ``half-open``).

    ``key``: the breaker's key (``task:NAME`` or ``tag:NAME``). ``old``, ``new``: states.
    ``task``: the task whose attempt caused the change, or ``None``.

    Return: ignored (observer).
    """
