"""Time, injectable: the engine's timer (retries, timeouts) and the scheduler read a Clock.

:class:`SystemClock` is real time with one timer thread per clock. The test double,
:class:`taskloom.FakeClock`, lives in the API layer (:mod:`taskloom.api.fakeclock`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable


class TimerHandle:
    """A scheduled callback; :meth:`cancel` stops it from firing."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@runtime_checkable
class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch (wall clock)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, timers)."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        """Run ``callback`` once, ``delay`` seconds from now, on the clock's timer."""

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set or ``timeout`` clock-seconds pass; True if set."""


#: The longest single wait of the timer thread; it wakes up and waits again after that.
_MAX_WAIT = 86400.0


class _TimerHeap:
    def __init__(self) -> None:
        self.heap: list[tuple[float, int, TimerHandle]] = []
        self.counter = itertools.count()

    def push(self, handle: TimerHandle) -> None:
        heapq.heappush(self.heap, (handle.when, next(self.counter), handle))

    def pop_due(self, now: float) -> list[TimerHandle]:
        due = []
        while self.heap and self.heap[0][0] <= now:
            handle = heapq.heappop(self.heap)[2]
            if not handle.cancelled:
                due.append(handle)
        return due

    def next_when(self) -> float | None:
        while self.heap and self.heap[0][2].cancelled:
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None


def _fire(handle: TimerHandle) -> None:
    try:
        handle.callback()
    except Exception:  # a timer callback must never kill the timer thread
        import logging

        logging.getLogger("taskloom.clock").exception("timer callback failed")


class SystemClock:
    """Real time. Timers run on one daemon thread, started on first use."""

    def __init__(self) -> None:
        self._timers = _TimerHeap()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    # The C functions themselves: the engine and the scheduler read the clock per task and
    # per job, and a Python wrapper would add a frame to every reading.
    # (monotonic first: once ``time`` is bound here it names the method, not the module)
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay), callback)
        with self._cond:
            self._timers.push(handle)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="taskloom-timer", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return handle

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    nxt = self._timers.next_when()
                    now = time.monotonic()
                    if nxt is not None and nxt <= now:
                        due = self._timers.pop_due(now)
                        break
                    # A far deadline (timeout = 1e300) must not overflow the wait and kill
                    # the timer thread, which every later timer of the process needs.
                    self._cond.wait(None if nxt is None else min(nxt - now, _MAX_WAIT))
            for handle in due:
                _fire(handle)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)


_default: SystemClock | None = None
_default_lock = threading.Lock()


def system_clock() -> SystemClock:
    """The process-wide real clock (one timer thread for every engine that uses it)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = SystemClock()
    return _default
