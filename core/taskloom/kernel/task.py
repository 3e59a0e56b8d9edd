"""The task: one unit of work, its metadata and its lifecycle state."""

from __future__ import annotations

import os
import time
from _random import Random as _Random
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from taskloom.kernel.errors import TaskloomError
from taskloom.kernel.stash import HasStash
from taskloom.kernel.states import TERMINAL, TaskState, check_transition

if TYPE_CHECKING:
    from taskloom.kernel.engine import Run

TRIGGER_RULES = ("all_success", "all_done", "one_failed", "always")
#: Keys of ``task.options`` the core itself reads; every other key is a plugin's option.
CORE_OPTIONS = frozenset({"executor", "deadline"})

_PENDING = TaskState.PENDING
_NO_TAGS: frozenset[str] = frozenset()


def validate_priority(name: str, priority: object) -> int:
    """Return ``priority`` if it is an int from 1 (highest) to 10 (lowest); else ValueError."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 10:
        raise ValueError(
            f"task {name!r}: priority must be an integer from 1 (highest) to 10 (lowest), "
            f"got {priority!r}"
        )
    return priority


def _names(task: str, what: str, value: object) -> list[str]:
    """``value`` as a list of non-empty strings (task names, tags); TypeError naming the task."""
    if type(value) is not list and (isinstance(value, str) or not isinstance(value, Iterable)):
        raise TypeError(f"task {task!r}: {what} must be a list of strings, got {value!r}")
    items = list(value)
    for item in items:
        if (type(item) is not str and not isinstance(item, str)) or not item:
            raise TypeError(f"task {task!r}: {what} must be a list of non-empty strings, "
                            f"got {item!r} in it")
    return items


def _uuid4_hex() -> str:
    """``uuid.uuid4().hex`` without a UUID object: traced and managed tasks each need one."""
    n = (_IDS.getrandbits(128) & _UUID_CLEAR) | _UUID_V4
    return f"{n:032x}"


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_IDS = _Random()  # ids need uniqueness, not secrecy: no system call per id (urandom's)
getattr(os, "register_at_fork", lambda **_: None)(after_in_child=_IDS.seed)  # forks differ


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


class Task(HasStash):
    """A unit of work.

    ``fn`` is the body (sync or ``async def``); a subclass may override :meth:`execute`
    instead. A task with neither completes with result ``None``. Parameters of the body named
    like a dependency receive that dependency's result; a parameter named ``context``
    receives the :class:`~taskloom.kernel.engine.TaskContext` of the attempt.

    ``executor`` picks the executor the attempt runs on and ``deadline`` orders it in the
    ``deadline`` queue. Every other keyword is a task option a plugin declared
    (``registry.add_task_option``): ``retry``, ``timeout``, ``cache``, ``circuit_breaker``,
    ``fallback`` and ``error_handlers`` come from the standard plugins. Options land in
    ``task.options`` (as do the keys of ``options``); a run rejects a task carrying an option
    no loaded plugin declared, naming the plugin it needs.
    """

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_attempt",
        "_completed",
        "_created",
        "_dependents",
        "_id",
        "_plan",
        "_run",
        "_started",
        "_status",
        "_waiting_on",
        "attempts",
        "config",
        "dependencies",
        "description",
        "duration",
        "error",
        "error_traceback",
        "error_type",
        "exception",
        "fn",
        "name",
        "options",
        "priority",
        "result",
        "tags",
        "trigger_rule",
    )

    def __init__(
        self,
        name: str,
        description: str = "",
        priority: int = 1,
        dependencies: Iterable[str] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        fn: Callable[..., Any] | None = None,
        tags: Iterable[str] = (),
        trigger_rule: str = "all_success",
        executor: str | None = None,
        deadline: float | datetime | None = None,
        options: Mapping[str, Any] | None = None,
        **plugin_options: Any,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a task name must be a non-empty string, got {name!r}")
        self.name = name
        if not isinstance(description, str):
            raise TypeError(f"task {name!r}: description must be a string, got {description!r}")
        self.description = description
        # The common case (a small int) skips the validation call.
        if type(priority) is not int or not 1 <= priority <= 10:
            validate_priority(name, priority)
        self.priority = priority
        self.dependencies: list[str] = (
            _names(name, "dependencies", dependencies) if dependencies else [])
        if config and not isinstance(config, Mapping):
            raise TypeError(f"task {name!r}: config must be a mapping, got {config!r}")
        self.config: dict[str, Any] = dict(config) if config else {}
        if fn is not None and not callable(fn):
            raise TypeError(f"task {name!r}: fn must be callable, got {fn!r}")
        self.fn = fn
        self.tags: frozenset[str] = frozenset(_names(name, "tags", tags)) if tags else _NO_TAGS
        if not isinstance(trigger_rule, str) or trigger_rule not in TRIGGER_RULES:
            raise ValueError(
                f"task {name!r}: unknown trigger_rule {trigger_rule!r}; "
                f"one of {', '.join(sorted(TRIGGER_RULES))}"
            )
        self.trigger_rule = trigger_rule
        if options and not isinstance(options, Mapping):
            raise TypeError(f"task {name!r}: options must be a mapping, got {options!r}")
        opts: dict[str, Any] = dict(options) if options else {}
        if plugin_options:  # None means "not given", as for the core's keywords
            opts.update((k, v) for k, v in plugin_options.items() if v is not None)
        if executor is not None:
            opts["executor"] = executor
        if deadline is not None:
            opts["deadline"] = deadline
        self.options = opts
        self._id: str | None = None
        self._status = _PENDING
        self.result: Any = None
        self.error: str | None = None
        self.error_type: str | None = None
        self.exception: BaseException | None = None
        self.error_traceback: str | None = None
        self.attempts = 0
        self.duration: float | None = None
        self._created = time.time()
        self._started: float | None = None
        self._completed: float | None = None
        self._run: Run | None = None
        self._plan: Any = None
        self._attempt: Any = None
        self._waiting_on = 0
        self._dependents: list[Task] = ()  # type: ignore[assignment]  # a list once it joins

    # -- identity and metadata ------------------------------------------------------------
    @property
    def id(self) -> str:
        """A unique id, generated on first use (uuid4 hex)."""
        if self._id is None:
            self._id = _uuid4_hex()
        return self._id

    @property
    def status(self) -> TaskState:
        return self._status

    @property
    def run(self) -> Run | None:
        """The run the task last joined (None before it joined one)."""
        return self._run

    @property
    def current_attempt(self) -> Any:
        """The :class:`~taskloom.kernel.engine.Attempt` running now, or None.

        An attempt that is no longer the task's current one was cancelled or failed from
        outside (a timeout) while its body ran; its result will be discarded."""
        return self._attempt

    @property
    def started(self) -> float | None:
        """When the task's first attempt in its current go started (POSIX seconds)."""
        return self._started

    @property
    def completed(self) -> float | None:
        """When the task reached its final state (POSIX seconds), or None."""
        return self._completed

    @property
    def executor(self) -> str | None:
        """Name of the executor this task asks for (None: the run's default)."""
        return self.options.get("executor")

    @property
    def deadline(self) -> float | None:
        """Deadline as a POSIX timestamp, for the ``deadline`` queue strategy."""
        value = self.options.get("deadline")
        if isinstance(value, datetime):
            return value.timestamp()
        return value

    @property
    def created_at(self) -> datetime:
        return _utc(self._created)  # type: ignore[return-value]

    @property
    def started_at(self) -> datetime | None:
        return _utc(self._started)

    @property
    def completed_at(self) -> datetime | None:
        return _utc(self._completed)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self._status.value} priority={self.priority}>"

    # -- the documented methods -------------------------------------------------------------
    def execute(self, **kwargs: Any) -> Any:
        """The task's body: call ``fn`` (awaiting it if it is ``async def``) and return its result.

        Override this in a subclass for custom logic. Calling it directly only runs the body;
        the lifecycle (states, retries, hooks) is driven by an engine run.
        """
        fn = self.fn
        if fn is None:
            return None
        result = fn(**kwargs)
        if type(result).__name__ == "coroutine":
            import asyncio  # only async bodies pay for the import

            return asyncio.run(result)
        return result

    def cancel(self) -> None:
        """Cancel the task: at once when not running, by its cancellation token when running."""
        run = self._run
        if run is not None:
            run.cancel_task(self)
        elif self._status not in TERMINAL:
            self._move(TaskState.CANCELLED)

    def retry(self) -> None:
        """Move a failed task to ``retrying``: the next run it joins gives it another attempt
        (a task runs once per run; ``TaskManager.retry_task`` starts that run)."""
        run = self._run
        if run is not None and run.status in ("pending", "running", "idle"):
            raise TaskloomError(
                f"task {self.name!r} is in the open run {run.id}: retry it in a new run"
            )
        self._move(TaskState.RETRYING)

    def get_status(self) -> str:
        return self._status.value

    def get_result(self) -> Any:
        return self.result

    def get_duration(self) -> float | None:
        return self.duration

    def add_dependency(self, task_name: str) -> None:
        self._check_editable()
        if task_name == self.name:
            raise ValueError(f"task {self.name!r} cannot depend on itself")
        if task_name not in self.dependencies:
            self.dependencies.append(task_name)

    def remove_dependency(self, task_name: str) -> None:
        self._check_editable()
        try:
            self.dependencies.remove(task_name)
        except ValueError:
            raise ValueError(f"task {self.name!r} has no dependency {task_name!r}") from None

    def register_error_handler(
        self, error_type: type[BaseException] | str, handler: Callable[..., Any]
    ) -> None:
        """Handle errors of ``error_type`` (or a subclass) with ``handler(error, task)``.

        Its return value becomes the task's result once retries are exhausted; the most
        specific registered type wins. Stored in ``options["error_handlers"]`` for the
        ``fallback`` plugin.
        """
        if not callable(handler):
            raise TypeError(f"task {self.name!r}: error handler must be callable")
        handlers = dict(self.options.get("error_handlers") or {})
        handlers[error_type] = handler
        self.options["error_handlers"] = handlers

    def get_performance_stats(self) -> dict[str, Any]:
        """Attempts of this task's name and their durations (from the ``stats`` component).

        ``execution_count`` (failures included), ``average_duration``, ``min_duration``,
        ``max_duration``, ``total_duration``, ``error_rate`` (0 to 1), ``last_execution``;
        ``{"status": "no_executions"}`` before the first attempt.
        """
        run = self._run
        if run is None:
            return {"status": "no_executions"}
        stats: dict[str, Any] = run.plugins.registry.first("stats").performance(self.name)
        return stats

    def get_debug_report(self) -> dict[str, Any]:
        """``task_name``, ``debug_info`` (recent attempts, readable), ``config``, ``status``."""
        run = self._run
        if run is None:
            return {"task_name": self.name, "debug_info": [], "config": dict(self.config),
                    "status": self._status.value}
        report: dict[str, Any] = run.plugins.registry.first("stats").debug_report(self)
        return report

    # -- internals ---------------------------------------------------------------------------
    def _check_editable(self) -> None:
        if self._run is not None and self._status not in TERMINAL:
            raise TaskloomError(f"task {self.name!r} is in a live run; its dependencies are fixed")

    def _move(self, new: TaskState) -> None:
        """Transition outside any run (no hooks to call)."""
        check_transition(self.name, self._status, new)
        self._status = new

    def _reset_outcome(self) -> None:
        self.result = None
        self.error = None
        self.error_type = None
        self.exception = None
        self.error_traceback = None
        self.duration = None
        self._started = None
        self._completed = None
