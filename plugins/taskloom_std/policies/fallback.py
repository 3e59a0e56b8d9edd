"""Fallbacks and error handlers: complete a failed task with a substitute result.

Consulted last, once no retry is left (see :mod:`taskloom_std.policies`).

* ``error_handlers``: ``{ExceptionType or dotted name: handler(error, task)}``, or
  :meth:`Task.register_error_handler`. The handlers of the error's class and its bases are
  tried from the most specific class to the most general (the class's MRO), whatever the
  registration order. The first handler that returns gives the task's result; a handler that
  raises is logged and the next one is tried. A handler may also return a decision
  (:class:`~taskloom.Retry`, :class:`~taskloom.Fail`, :class:`~taskloom.Fallback`).
* ``fallback``: then a value, or a callable ``fallback(error, task)`` whose return is the
  result. A fallback callable that raises is logged and the task fails with the original
  error.

The task ends ``completed`` with that result; ``task.error`` keeps the original error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from taskloom import ConfigError, Fail, Fallback, Retry, Stash, StashKey, hookimpl
from taskloom_std.policies._common import resolve_exception_type

log = logging.getLogger("taskloom.policies.fallback")

_DECISIONS = (Retry, Fail, Fallback)

#: ``Task.stash``: the resolved handler table, reused while the option is the same object
#: and size.
HANDLERS: StashKey[tuple[Any, int, dict[type[BaseException], Any]]] = StashKey()


def resolve_handlers(task: Any) -> dict[type[BaseException], Any]:
    raw = task.options.get("error_handlers") if task.options else None
    if not raw:
        return {}
    stash: Stash = task.stash
    cached = stash.get(HANDLERS, None)
    if cached is not None and cached[0] is raw and cached[1] == len(raw):
        return cached[2]
    where = f"task {task.name!r}: error_handlers"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of exception type to handler")
    table: dict[type[BaseException], Any] = {}
    for key, handler in raw.items():
        exc_type = resolve_exception_type(key, f"{where}[{key!r}]")
        if not callable(handler):
            raise ConfigError(f"{where}[{key!r}] must be callable, got {handler!r}")
        table[exc_type] = handler
    stash[HANDLERS] = (raw, len(raw), table)
    return table


def _call(fn: Any, error: BaseException, task: Any, what: str) -> tuple[bool, Any]:
    try:
        return True, fn(error, task)
    except Exception:
        log.exception("%s for task %r failed", what, task.name)
        return False, None


def _decision(value: Any) -> Any:
    return value if isinstance(value, _DECISIONS) else Fallback(value)


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add_task_option("fallback", object, "result to use when every attempt failed "
                             "(a value, or a callable(error, task) from Python)")
    # Checked in taskloom_task_prepare, where the resolved table is kept for the task.
    registry.add_task_option("error_handlers", dict, "exception type -> handler(error, task), "
                             "most specific type first, once retries are over")


@hookimpl
def taskloom_task_prepare(task: Any) -> None:
    resolve_handlers(task)


@hookimpl(trylast=True)
def taskloom_task_error(task: Any, error: BaseException) -> Any:
    options = task.options
    if not options:
        return None
    handlers = resolve_handlers(task)
    if handlers:
        for cls in type(error).__mro__:
            handler = handlers.get(cls)
            if handler is None:
                continue
            ok, value = _call(handler, error, task, f"error handler for {cls.__name__}")
            if ok:
                return _decision(value)
    if "fallback" not in options:
        return None
    fallback = options["fallback"]
    if not callable(fallback):
        return Fallback(fallback)
    ok, value = _call(fallback, error, task, "fallback")
    return _decision(value) if ok else None
