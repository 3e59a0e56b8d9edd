"""The executor interface. Executors are plugins; the core only knows this contract."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskloom.kernel.engine import Attempt, Run


class CancelToken:
    """Cooperative cancellation for one attempt; cheap until somebody waits on it."""

    __slots__ = ("_callbacks", "_cancelled", "_event", "reason")

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[], Any]] | None = None
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self, reason: str = "cancelled") -> None:
        callbacks = None
        if not self._cancelled:
            with _event_lock:  # pairs with add_callback: no callback is missed
                if not self._cancelled:
                    self.reason = reason
                    self._cancelled = True
                    callbacks, self._callbacks = self._callbacks, None
        event = self._event
        if event is not None:
            event.set()
        for fn in callbacks or ():
            fn()

    def add_callback(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` once when the token is cancelled (at once if it already is).

        It runs in the cancelling thread, possibly under the run's lock: it must not block.
        """
        with _event_lock:
            if not self._cancelled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; True when cancelled."""
        if self._event is None:
            with _event_lock:
                if self._event is None:
                    self._event = threading.Event()
        if self._cancelled:
            return True
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            from taskloom.kernel.errors import TaskCancelled

            raise TaskCancelled(self.reason or "cancelled")


_event_lock = threading.Lock()


class Executor(abc.ABC):
    """Runs attempts. Subclasses implement :meth:`submit`.

    ``submit(attempt)`` is called under the run's lock and must not block: it hands the
    attempt to a worker, which calls ``attempt.call()`` (the body with the task's wrappers)
    and then ``attempt.done(value, error)`` exactly once. The engine never hands an executor
    more than ``max_workers`` attempts at once.
    """

    name = "executor"
    #: True when ``async def`` bodies run natively (else they run with ``asyncio.run``).
    native_async = False
    #: True when the executor can stop a running body at a hard timeout on its own (a worker
    #: process can be killed; a thread cannot). A hard timeout on an executor without this
    #: capability is refused when the task joins a run.
    hard_timeouts = False
    holds_worker = True  #: False: attempts wait without a worker, outside max_workers
    #: True when workers make progress without :meth:`drive` (it only speeds the run up):
    #: such an executor is driven by a wait for the whole run, not by one for some tasks.
    drive_optional = False

    def __init__(self, max_workers: int | None = None, **options: Any) -> None:
        if options:
            raise TypeError(f"unknown option(s) {', '.join(sorted(options))}")
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
        self.max_workers = max_workers or self.default_workers()

    @staticmethod
    def default_workers() -> int:
        import os

        return min(32, (os.cpu_count() or 1) + 4)

    def start(self, run: Run) -> None:
        """Called once before the first submit."""

    @abc.abstractmethod
    def submit(self, attempt: Attempt) -> None:
        """Hand ``attempt`` to a worker without blocking."""

    def cancel(self, attempt: Attempt) -> None:
        """Stop a running attempt if the executor can (its token is already cancelled)."""

    def drive(self, run: Run, timeout: float | None) -> None:
        """Called by the thread waiting on a run; executors that run work in the waiter's
        thread (``inline``) do it here."""

    def shutdown(self, wait: bool = True) -> None:
        """Release workers. ``wait=False`` must not block on attempts that overran."""


def hard_timeout_executors(registry: Any) -> list[str]:
    """Names of the registered executors that can stop a running body (``hard_timeouts``),
    each asked by building it with its default options."""
    names: list[str] = []
    for name in registry.names("executor"):
        try:
            executor = registry.create("executor", name)
        except Exception:  # an executor that cannot be built with defaults is not offered
            continue
        try:
            if getattr(executor, "hard_timeouts", False):
                names.append(name)
        finally:
            executor.shutdown(wait=False)
    return names
