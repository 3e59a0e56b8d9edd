"""Timeouts on the engine's clock, never with signals.

Task option ``timeout``: seconds (``timeout = 30``, the same as ``{soft = 30}``) or
``{soft = 30, hard = 60}``.

* **soft**: at the deadline the attempt fails with :class:`~taskloom.TaskTimeout` (the error
  policies decide next, as for any failure), its cancellation token is set and the
  executor's ``cancel`` is called: a thread body is asked to stop (it should watch
  ``context.token``; its late return is reported by ``taskloom_task_overrun``), an
  ``async def`` body is cancelled, a process worker is killed.
* **hard**: the process executor kills and replaces the worker at that deadline on its own,
  even with this plugin disabled. Threads cannot be killed: a hard limit on an executor
  without the ``hard_timeouts`` capability (thread, asyncio, inline) is refused when the task
  joins a run, naming the executors that have it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from taskloom import ConfigError, TaskTimeout, hookimpl
from taskloom_std.policies._common import number


def parse_timeout(value: Any, where: str) -> tuple[float | None, float | None]:
    """``(soft, hard)`` seconds from a ``timeout`` option; ConfigError naming ``where``."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"soft", "hard"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: hard, soft")
        soft, hard = value.get("soft"), value.get("hard")
        if soft is None and hard is None:
            raise ConfigError(f"{where} needs soft or hard")
        _positive(soft, f"{where}.soft")
        _positive(hard, f"{where}.hard")
        if soft is not None and hard is not None and soft > hard:
            raise ConfigError(f"{where}.soft must not be later than hard ({soft} > {hard})")
        return soft, hard
    _positive(value, where)
    return float(value), None


def _positive(value: Any, where: str) -> None:
    if value is None:
        return
    number(value, where)
    if value <= 0:
        raise ConfigError(f"{where} must be a number > 0, got {value!r}")


class TimeoutWrapper:
    """Arms a timer on the run's clock for the length of each attempt."""

    __slots__ = ("hard", "soft")

    def __init__(self, soft: float | None, hard: float | None) -> None:
        self.soft, self.hard = soft, hard

    def _deadline(self, attempt: Any) -> float | None:
        if self.soft is not None:
            return self.soft
        if getattr(attempt.plan.executor, "hard_timeouts", False):
            return None  # the executor enforces the hard limit itself
        return self.hard

    def _arm(self, attempt: Any) -> Any:
        seconds = self._deadline(attempt)
        if seconds is None:
            return None
        run = attempt.run
        expire = functools.partial(_expire, run, attempt, seconds)
        return run.clock.call_later(seconds, expire)

    def __call__(self, call: Callable[[], Any], attempt: Any) -> Any:
        handle = self._arm(attempt)
        try:
            return call()
        finally:
            if handle is not None:
                handle.cancel()

    async def acall(self, acall: Callable[[], Awaitable[Any]], attempt: Any) -> Any:
        handle = self._arm(attempt)
        try:
            return await acall()
        finally:
            if handle is not None:
                handle.cancel()


def _expire(run: Any, attempt: Any, seconds: float) -> None:
    run.fail_attempt(attempt, TaskTimeout(attempt.task.name, seconds))


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add_task_option("timeout", ("number", "table"), "seconds, or {soft, hard}",
                             validate=parse_timeout)


@hookimpl
def taskloom_task_prepare(task: Any, run: Any) -> None:
    if "timeout" in task.options:
        _, hard = parse_timeout(task.options["timeout"], f"task {task.name!r}: timeout")
        if hard is not None and run is not None:
            check_hard_timeout(task, run.executor_for(task), run.plugins.registry)


def check_hard_timeout(task: Any, executor: Any, registry: Any) -> None:
    """ConfigError unless ``executor`` can stop a body at the hard limit by itself."""
    if getattr(executor, "hard_timeouts", False):
        return
    from taskloom.kernel.executor import hard_timeout_executors

    able = hard_timeout_executors(registry)
    name = getattr(executor, "name", type(executor).__name__)
    where = (f"executors that can: {', '.join(repr(n) for n in able)} (executor = "
             f"\"{able[0]}\" on the task or in [taskloom])" if able
             else "no installed executor can")
    raise ConfigError(
        f"task {task.name!r}: timeout.hard: the {name!r} executor cannot stop a running body; "
        f"{where}; or use a soft timeout"
    )


@hookimpl
def taskloom_task_wrappers(task: Any) -> Any:
    value = task.options.get("timeout") if task.options else None
    if value is None:
        return None
    soft, hard = parse_timeout(value, f"task {task.name!r}: timeout")
    return TimeoutWrapper(soft, hard)
