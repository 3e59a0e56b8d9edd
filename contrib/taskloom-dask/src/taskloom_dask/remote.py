"""What runs on a Dask worker: the task body, inside the trace context of the run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any


def run_remote(
    body: Callable[..., Any],
    kwargs: Mapping[str, Any],
    is_async: bool,
    carrier: Mapping[str, str] | None,
) -> Any:
    """Call ``body(**kwargs)`` on the worker.

    ``carrier`` holds the W3C trace headers of the submitting side (``traceparent``...);
    attaching them makes spans the body opens children of the run's span, the same as on a
    local thread. ``async def`` bodies run to completion in a fresh event loop.
    """
    if not carrier:
        return _call(body, kwargs, is_async)
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(dict(carrier)))
    try:
        return _call(body, kwargs, is_async)
    finally:
        context.detach(token)


def _call(body: Callable[..., Any], kwargs: Mapping[str, Any], is_async: bool) -> Any:
    result = body(**kwargs)
    if is_async:
        return asyncio.run(result)
    return result
