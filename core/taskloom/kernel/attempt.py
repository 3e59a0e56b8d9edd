"""Attempts: one try at running a task, what it needs (its plan), and the context its body
receives. The run (engine.py) makes them and executors run them."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskloom.kernel.errors import ConfigError
from taskloom.kernel.executor import CancelToken, Executor
from taskloom.kernel.stash import HasStash
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.engine import Run

_token_lock = threading.Lock()

_CO_VARKEYWORDS = 0x08
_CO_COROUTINE = 0x80 | 0x100  # CO_COROUTINE | CO_ITERABLE_COROUTINE
_signature_cache: dict[Any, tuple[frozenset[str], bool, bool]] = {}


def _signature(fn: Callable[..., Any]) -> tuple[frozenset[str], bool, bool]:
    """(parameter names, accepts **kwargs, is a coroutine function), cached per code object."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        cached = _signature_cache.get(code)
        if cached is None:
            names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
            if getattr(fn, "__self__", None) is not None:  # bound method: drop self
                names = names[1:]
            cached = (
                frozenset(names),
                bool(code.co_flags & _CO_VARKEYWORDS),
                bool(code.co_flags & _CO_COROUTINE),
            )
            if len(_signature_cache) < 10_000:
                _signature_cache[code] = cached
        return cached
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return frozenset(), False, False
    names = frozenset(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    varkw = any(p.kind is p.VAR_KEYWORD for p in params)
    target = getattr(fn, "func", fn)  # functools.partial
    call = type(target).__call__ if not inspect.isroutine(target) else target
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)
    return names, varkw, is_async


#: Body parameters the engine fills itself, besides dependency results.
_ENGINE_FILLED = ("context",)


def unfilled_parameters(task: Task) -> list[str]:
    """A message for each parameter of the task's body that nothing fills: not named like a
    dependency, not ``context``, without a default (the run would fail with Python's
    "missing 1 required positional argument"). Empty when the body can be called."""
    body = task.execute if type(task).execute is not Task.execute else task.fn
    if body is None:
        return []
    free = _signature(body)[0].difference(task.dependencies, _ENGINE_FILLED)
    if not free:
        return []
    import difflib
    import inspect

    try:
        params = inspect.signature(body).parameters.values()
    except (TypeError, ValueError):
        return []
    deps = list(dict.fromkeys(task.dependencies))
    problems = []
    for p in params:
        if p.name in free and p.default is p.empty and p.kind not in (
                p.VAR_POSITIONAL, p.VAR_KEYWORD):
            close = difflib.get_close_matches(p.name, deps, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            problems.append(
                f"parameter {p.name!r} of the body matches no dependency (depends on: "
                f"{', '.join(deps) or 'nothing'}) and has no default{hint}"
            )
    return problems


class Plan:
    """What an attempt of one task needs, worked out once when the task joins a run."""

    __slots__ = ("body", "deps", "direct", "executor", "is_async", "wants_context", "wrappers")

    def __init__(self, task: Task, wrappers: Sequence[Any], executor: Executor) -> None:
        if type(task).execute is not Task.execute:
            body: Callable[..., Any] | None = task.execute
        else:
            body = task.fn
        self.body = body
        self.wrappers = wrappers
        self.executor = executor
        self.direct: Callable[[], Any] | None = None
        if body is None:
            self.deps: tuple[str, ...] = ()
            self.wants_context = False
            self.is_async = False
            return
        names, varkw, self.is_async = _signature(body)
        if names and names.difference(task.dependencies, _ENGINE_FILLED):
            problems = unfilled_parameters(task)
            if problems:
                raise ConfigError([f"task {task.name!r}: {p}" for p in problems])
        if names or varkw:
            self.deps = tuple(
                d for d in dict.fromkeys(task.dependencies) if varkw or d in names
            )
        else:
            self.deps = ()
        self.wants_context = "context" in names
        #: The body when an attempt is just ``body()`` (no arguments, wrappers, coroutine).
        self.direct = None if self.deps or self.wants_context or self.is_async or wrappers else body


class TaskContext:
    """What a task body receives as its ``context`` parameter."""

    __slots__ = ("attempt", "run", "task")

    def __init__(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.task = attempt.task
        self.run = attempt.run

    @property
    def token(self) -> CancelToken:
        """The attempt's cancellation token: check ``token.cancelled`` in long loops."""
        return self.attempt.token

    @property
    def cancelled(self) -> bool:
        return self.attempt.token.cancelled

    @property
    def results(self) -> Mapping[str, Any]:
        """Results of the run's completed tasks, by name."""
        return self.run.results

    @property
    def data(self) -> dict[str, Any]:
        """The run's shared context data (``Engine.run(..., data=...)``)."""
        return self.run.data

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def config(self) -> dict[str, Any]:
        return self.task.config

    @property
    def params(self) -> Mapping[str, Any]:
        """The run's parameters (``Engine.run(..., params=...)``, ``--param``)."""
        return self.run.params

    def add_tasks(self, tasks: Iterable[Task]) -> None:
        """Grow this run: add tasks, validated with what it has (names, dependencies)."""
        self.run.add(tasks)


class Attempt(HasStash):
    """One try at running a task; executors receive these."""

    __slots__ = ("_token", "finished", "number", "output", "plan", "run", "served_by", "started",
                 "task", "value")

    def __init__(self, task: Task, number: int, run: Run) -> None:
        self.task = task
        #: What the attempt runs: ``body``, ``deps``, ``wants_context``, ``is_async``,
        #: ``wrappers``, ``executor`` and ``direct`` (worked out when the task joined the run).
        self.plan: Plan = task._plan
        self.number = number
        self.run = run
        self._token: CancelToken | None = None
        self.started = 0.0
        self.finished: float | None = None
        self.value: Any = None
        #: What the body printed and logged, when an output-capturing plugin kept it (set
        #: before ``taskloom_attempt_finish`` observers other than that plugin run).
        self.output: str | None = None
        #: The plugin that supplied the value without running the body (a cache hit).
        self.served_by: str | None = None

    @property
    def token(self) -> CancelToken:
        """The attempt's cancellation token, made on first use (most attempts never need
        one); the canceller and the body always see the same token."""
        token = self._token
        if token is None:
            with _token_lock:
                token = self._token
                if token is None:
                    token = self._token = CancelToken()
        return token

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    @property
    def current(self) -> bool:
        """False once the attempt was cancelled or failed from outside (a timeout)."""
        return self.task._attempt is self

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments the body receives: dependency results and ``context``."""
        plan = self.plan
        tasks = self.run.tasks
        kwargs = {d: tasks[d].result for d in plan.deps}
        if plan.wants_context:
            kwargs["context"] = TaskContext(self)
        return kwargs

    def invoke(self) -> Any:
        """Run the body once, without wrappers (coroutines run to completion here)."""
        plan = self.plan
        body = plan.body
        if body is None:
            return None
        result = body(**self.kwargs()) if plan.deps or plan.wants_context else body()
        if plan.is_async:
            import asyncio

            result = asyncio.run(_cancellable(result, self.token))
        return result

    def call(self) -> Any:
        """Run the body inside the task's wrappers (timeout, cache, breaker, tracing...)."""
        plan = self.plan
        if plan.direct is not None:
            return plan.direct()
        if not plan.wrappers:
            return self.invoke()
        return self.wrap(self.invoke)()

    def wrap(self, inner: Callable[[], Any]) -> Callable[[], Any]:
        """``inner`` inside the task's wrappers, outermost first."""
        fn = inner
        for w in reversed(self.plan.wrappers):
            fn = functools.partial(w, fn, self)
        return fn

    def done(self, value: Any, error: BaseException | None) -> None:
        """Report the outcome; executors call this exactly once per attempt."""
        self.run._on_done(self, value, error)

    def __repr__(self) -> str:
        return f"<Attempt {self.task.name!r} #{self.number}>"


async def _cancellable(coro: Any, token: CancelToken) -> Any:
    """Await ``coro``, cancelling it when ``token`` is (a timeout, a cancel from any thread)."""
    import asyncio

    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()

    def cancel() -> None:
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:  # the loop already finished: nothing left to cancel
            pass

    token.add_callback(cancel)
    return await task
