"""What runs on a Dask worker: the task body, inside the trace context of the run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Where a body's captured text rides back on an exception it raised (``exc.__dict__``).
OUTPUT_ATTRIBUTE = "taskloom_output"


@dataclass(frozen=True)
class Captured:
    """A body's result together with what it printed and logged on the worker."""

    value: Any
    output: tuple[str, int]


def run_remote(
    body: Callable[..., Any],
    kwargs: Mapping[str, Any],
    is_async: bool,
    carrier: Mapping[str, str] | None,
    capture: int | None = None,
) -> Any:
    """Call ``body(**kwargs)`` on the worker.

    ``carrier`` holds the W3C trace headers of the submitting side (``traceparent``...);
    attaching them makes spans the body opens children of the run's span, the same as on a
    local thread. ``async def`` bodies run to completion in a fresh event loop.

    With ``capture`` (characters to keep) what the body prints and logs is collected and
    returned with the result as :class:`Captured`, or attached to the exception it raised.
    """
    if not carrier:
        return _captured(body, kwargs, is_async, capture)
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(dict(carrier)))
    try:
        return _captured(body, kwargs, is_async, capture)
    finally:
        context.detach(token)


def _captured(body: Callable[..., Any], kwargs: Mapping[str, Any], is_async: bool,
              capture: int | None) -> Any:
    if capture is None:
        return _call(body, kwargs, is_async)
    from taskloom_std.observability.capture import Collect

    # The worker's logging configuration is its own (threads of other tasks share it).
    with Collect(capture) as collected:
        try:
            value = _call(body, kwargs, is_async)
        except BaseException as exc:
            exc.__dict__[OUTPUT_ATTRIBUTE] = collected.result()
            raise
    return Captured(value, collected.result())


def _call(body: Callable[..., Any], kwargs: Mapping[str, Any], is_async: bool) -> Any:
    result = body(**kwargs)
    if is_async:
        return asyncio.run(result)
    return result
