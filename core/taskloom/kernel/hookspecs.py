"""Every hook the core calls, documented, with its kind declared on the spec.

Plugins implement hooks with :data:`taskloom.hookimpl`::

    from taskloom import hookimpl

    @hookimpl
    def taskloom_task_transition(task, old, new, run):
        ...

A plugin may declare hooks of its own (the ``circuit_breaker`` plugin declares
``taskloom_circuit_change``): it implements ``taskloom_addhooks`` and adds a module of specs
written with the same decorators as here.

Kinds of hook, declared by the decorator of each spec (:func:`setup`, :func:`observer`,
:func:`policy`, :func:`wrapper`, :func:`decision`):

* **setup** (``taskloom_addhooks``, ``taskloom_register``, ``taskloom_configure``): called
  once when a plugin set is built or configured.
* **observers**: return values are ignored. A plugin that raises in an observer is logged
  with its name and the run goes on.
* **policy** and **wrapper** hooks (``taskloom_task_prepare``, ``taskloom_*_wrappers``)
  and the first-result **decision** (``taskloom_task_error``): their result changes what
  happens to a task. A plugin that raises there fails that task with a
  :class:`~taskloom.kernel.errors.PluginError` naming the plugin.

Hooks that no plugin implements are not called at all on the engine's per-task path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from taskloom.kernel.decisions import Fail, Fallback, Retry
    from taskloom.kernel.engine import Attempt, Run, RunSummary
    from taskloom.kernel.registry import Registry
    from taskloom.kernel.states import TaskState
    from taskloom.kernel.task import Task

hookspec = pluggy.HookspecMarker("taskloom")

F = TypeVar("F", bound=Callable[..., Any])


class Kind(str, Enum):
    """What a hook is for, which decides how a plugin's failure in it is handled."""

    SETUP = "setup"
    OBSERVER = "observer"
    POLICY = "policy"
    WRAPPER = "wrapper"
    DECISION = "decision"

    @property
    def guarded(self) -> bool:
        """Whether a failure is contained: logged (observer) or a PluginError (the rest)."""
        return self is not Kind.SETUP


def _spec(kind: Kind, **opts: Any) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.taskloom_kind = kind  # type: ignore[attr-defined]
        return hookspec(**opts)(fn)  # type: ignore[no-any-return]

    return mark


def setup(fn: F) -> F:
    """A registration or configuration hook."""
    return _spec(Kind.SETUP)(fn)


def observer(fn: F) -> F:
    """A hook whose return values are ignored; a raising plugin is logged."""
    return _spec(Kind.OBSERVER)(fn)


def policy(fn: F) -> F:
    """A hook whose outcome changes what happens to a task; a raising plugin fails the task."""
    return _spec(Kind.POLICY)(fn)


def wrapper(fn: F) -> F:
    """A hook that returns wrappers around a task's attempts (a policy hook)."""
    return _spec(Kind.WRAPPER)(fn)


def decision(fn: F) -> F:
    """A first-result hook: the first implementation returning non-None decides."""
    return _spec(Kind.DECISION, firstresult=True)(fn)


def kind_of(spec_function: Any) -> Kind:
    """The kind a spec function was declared with; a bare ``hookspec`` is a decision when
    first-result, else an observer (as is a hook with no spec yet)."""
    kind = getattr(spec_function, "taskloom_kind", None)
    if kind is not None:
        return kind  # type: ignore[no-any-return]
    opts = getattr(spec_function, "taskloom_spec", None) or {}
    return Kind.DECISION if opts.get("firstresult") else Kind.OBSERVER


@_spec(Kind.SETUP, historic=True)
def taskloom_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add the hook specs a plugin declares for its own events.

    When: as soon as a plugin implementing it is registered (historic: before the plugin
    set's components are registered).

    ``pluginmanager``: the plugin set's pluggy manager; call
    ``pluginmanager.add_hookspecs(module)`` with a module whose specs use this module's
    decorators (``@observer``, ``@policy``, ...).

    Return: ignored. Every hook a plugin implements must have a spec once all plugins are
    loaded, unless it is marked ``@hookimpl(optionalhook=True)``.
    """


@setup
def taskloom_register(registry: Registry) -> None:
    """Register named components.

    When: once, right after a plugin set (one per engine or manager) has loaded its plugins.

    ``registry``: a :class:`taskloom.kernel.registry.Registry`. Call
    ``registry.add(kind, name, factory)`` with ``kind`` one of
    :data:`taskloom.kernel.registry.KINDS`; the factory is called with keyword options when
    a run or scheduler selects the component by name. ``registry.add_task_option``,
    ``registry.add_config_section`` and ``registry.add_error`` declare what the plugin reads
    and raises.

    Return: ignored. Registering a name another plugin already registered for that kind is a
    :class:`~taskloom.kernel.errors.PluginError` naming both plugins.
    """


@_spec(Kind.SETUP, historic=True)
def taskloom_configure(config: Mapping[str, Any]) -> None:
    """Read configuration.

    When: once per plugin set, when its configuration is known (the TOML ``[taskloom]``
    table, or ``{}`` for a library user who gave none). Historic: a plugin registered later
    is called at once with the same configuration.

    ``config``: a read-only mapping of the whole ``[taskloom]`` table; a plugin reads its own
    section (``config.get("otel", {})``).

    Return: ignored. Raise :class:`~taskloom.kernel.errors.ConfigError` for a bad section.
    """


@observer
def taskloom_run_start(run: Run) -> None:
    """A run is starting.

    When: once per run, after validation and before the first task is queued.

    ``run``: the :class:`taskloom.kernel.engine.Run` (``run.id``, ``run.name``, ``run.tasks``).

    Return: ignored (observer).
    """


@observer
def taskloom_run_finish(run: Run, summary: RunSummary) -> None:
    """A run has finished.

    When: once per run, when every task is in a final state (or the run was closed).

    ``run``: the run. ``summary``: its :class:`taskloom.kernel.engine.RunSummary` (status, counts,
    results, errors, duration).

    Return: ignored (observer).
    """


@policy
def taskloom_task_prepare(task: Task, run: Run) -> None:
    """Validate a task's plugin options before the run starts.

    When: once per task as it is added to a run, before anything runs, and only for tasks
    that carry options (``task.options`` not empty).

    ``task``: the task. ``run``: the run it joins.

    Return: ignored. Raise :class:`~taskloom.kernel.errors.ConfigError` naming the task and the key
    (``task 'load': retry.max_retries must be >= 0``) to reject the whole run before it
    starts.
    """


@wrapper
def taskloom_task_wrappers(
    task: Task, run: Run
) -> Callable[[Callable[[], Any], Attempt], Any] | None:
    """Supply wrappers around the attempts of a task with options or tags (timeout, cache).

    When: once per task that has options or tags, as it is added to a run (not per attempt);
    a wrapper for every task belongs in ``taskloom_run_wrappers``.

    ``task``: the task. ``run``: the run.

    Return: ``None`` when the plugin has nothing to wrap, else a wrapper: a callable
    ``wrapper(call, attempt) -> result`` that normally returns ``call()``; it may skip the
    call (a cache hit), raise instead (an open circuit), or observe it (a span). It runs where
    the attempt runs (a worker thread, the process executor's dispatcher thread, an event loop
    thread). A wrapper may also define ``async def acall(self, acall, attempt)`` used by the
    asyncio executor. The first plugin called (``tryfirst``) gives the outermost wrapper.
    """



@wrapper
def taskloom_run_wrappers(run: Run) -> Callable[[Callable[[], Any], Attempt], Any] | None:
    """Supply a wrapper around every attempt of a run (tracing, output capture, resources).

    When: once per run, when its first tasks are added. Its wrappers go outside the task's
    own (``taskloom_task_wrappers``). ``run``: the run.

    Return: ``None``, or a wrapper as for ``taskloom_task_wrappers``; it reads the task from
    ``attempt.task``.
    """

@decision
def taskloom_task_error(
    task: Task, error: BaseException, attempt: Attempt, run: Run
) -> Retry | Fallback | Fail | None:
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


@observer
def taskloom_attempt_failed(
    task: Task, error: BaseException, attempt: Attempt, run: Run
) -> None:
    """An attempt failed; every implementation sees it, whoever decides what follows.

    When: each time an attempt fails (an exception, a timeout), just before
    ``taskloom_task_error`` is asked, and not while the run is being cancelled. Counting
    failures belongs here (the circuit breaker does): a decision hook that answers first
    stops the others from being asked, an observer does not.

    ``task``: the task. ``error``: the exception. ``attempt``: the attempt that failed.
    ``run``: the run.

    Return: ignored (observer).
    """


@observer
def taskloom_task_transition(task: Task, old: TaskState, new: TaskState, run: Run | None) -> None:
    """A task changed state.

    When: on every state change of a task in a run, in order, exactly once per change.

    ``task``: the task (its ``status`` is already ``new``). ``old``, ``new``:
    :class:`taskloom.TaskState`. ``run``: the run, or ``None`` outside a run.

    Return: ignored (observer). Called under the run's lock: do not block.
    """


@observer
def taskloom_attempt_finish(
    task: Task, attempt: Attempt, error: BaseException | None, run: Run
) -> None:
    """An attempt has ended.

    When: once per attempt, when its body returned or raised (or a wrapper decided), before
    the task's next state is chosen.

    ``task``: the task. ``attempt``: the :class:`taskloom.kernel.engine.Attempt` (``number``,
    ``started``, ``finished`` as monotonic seconds, ``duration``, ``value``). ``error``: the
    exception, or ``None`` on success. ``run``: the run.

    Return: ignored (observer).
    """


@observer
def taskloom_attempt_output(task: Task, attempt: Attempt, text: str, run: Run) -> None:
    """A running attempt's body printed or logged whole lines.

    When: an output-capturing plugin (such as ``capture``) saw them, as they are written, in
    the thread (or event loop) running the body; a line still open when the attempt ends is
    passed on then. Not called for bodies whose output is not captured (capture off, another
    process).

    ``task``, ``attempt``, ``run``: as for ``taskloom_attempt_finish``. ``text``: one or more
    complete lines, each ending in a newline.

    Return: ignored (observer). Keep it cheap: the body waits for it.
    """


@observer
def taskloom_task_overrun(task: Task, attempt: Attempt, run: Run) -> None:
    """An attempt that was already failed (timed out) or cancelled has finally returned.

    When: when the worker running a soft-timed-out or cancelled attempt gets control back;
    its result is discarded.

    ``task``, ``attempt``, ``run``: as for ``taskloom_attempt_finish``.

    Return: ignored (observer).
    """
