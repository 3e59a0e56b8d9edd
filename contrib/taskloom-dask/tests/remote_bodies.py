"""Task bodies that run on Dask workers; importable there by module name."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from distributed import Event, Queue, get_worker


def where() -> int:
    return os.getpid()


def double(where: int) -> int:
    return where * 2


def combine(where: int, double: int) -> tuple[int, int]:
    return where, double


async def async_body() -> str:
    await asyncio.sleep(0)
    return "awaited"


def boom() -> None:
    raise ValueError("boom on a worker")


def fails_until(marker: str, failures: int) -> int:
    """Fails the first ``failures`` calls (counted in a file: workers share no memory)."""
    path = Path(marker)
    count = int(path.read_text()) if path.exists() else 0
    path.write_text(str(count + 1))
    if count < failures:
        raise ConnectionError(f"flaky call {count + 1}")
    return count + 1


def reads_context(where: int, context: Any) -> dict[str, Any]:
    try:
        context.results["other"]
    except KeyError as exc:
        missing = str(exc)
    return {
        "task": context.task.name,
        "dependencies": context.task.dependencies,
        "config": context.config,
        "results": dict(context.results),
        "run_id": context.run_id,
        "attempt": context.attempt.number,
        "data": context.data,
        "cancelled": context.cancelled,
        "missing": missing,
    }


class LockHolder:
    """A callable that cannot be pickled: it holds a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self) -> None:
        return None


def make_lock() -> Any:
    return threading.Lock()


def uses_lock(make_lock: Any) -> None:
    return None


def block_until_released(started: str, release: str) -> str:
    """Announce that the body runs (with its worker's pid), then wait to be released."""
    Queue(started).put(os.getpid())
    Event(release).wait(timeout=60)
    return "released"


def block_once(marker: str, started: str, release: str) -> str:
    """First call: announce itself and wait to be released. Later calls return at once."""
    path = Path(marker)
    if path.exists():
        return "second attempt"
    path.write_text("attempted")
    Queue(started).put(os.getpid())
    Event(release).wait(timeout=60)
    return "first attempt"


def die_once(marker: str, started: str) -> dict[str, Any]:
    """First call: announce the pid and hang until the worker is killed. Later: return."""
    path = Path(marker)
    if not path.exists():
        path.write_text("attempted")
        Queue(started).put(os.getpid())
        Event(started + "-never").wait(timeout=60)
    return {"pid": os.getpid(), "worker": get_worker().address}


def span_ids() -> tuple[int, int | None]:
    """Open a span on the worker; return its trace id and its parent's span id."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("worker")
    with tracer.start_as_current_span("on-worker") as span:
        parent = span.parent  # type: ignore[attr-defined]
        return span.get_span_context().trace_id, parent.span_id if parent else None


def span_ids_after(span_ids: tuple[int, int | None]) -> tuple[int, int | None]:
    """Same, for a dependent task (dispatched when its upstream finished)."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("worker")
    with tracer.start_as_current_span("on-worker") as span:
        parent = span.parent  # type: ignore[attr-defined]
        return span.get_span_context().trace_id, parent.span_id if parent else None


def chatty() -> int:
    import logging
    import sys

    print(f"on worker {os.getpid()}")
    sys.stderr.write("to stderr\n")
    logging.getLogger("etl").warning("kept %d", 7)
    return os.getpid()


def chatty_failure() -> None:
    print("before the failure")
    raise ValueError("bad on a worker")
