"""A clock that moves only when a test calls :meth:`FakeClock.advance`, firing every timer
that falls due on the way, so no test has to sleep for time to pass."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from taskloom.kernel.clock import TimerHandle, _fire, _TimerHeap


class FakeClock:
    """A clock that moves only when told to; timers fire inside :meth:`advance`.

    Threads blocked in :meth:`wait` wake when the clock passes their deadline.
    """

    def __init__(self, start: float | datetime = 1_700_000_000.0) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._mono = 0.0
        self._timers = _TimerHeap()
        self._cond = threading.Condition()

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now, timezone.utc)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> TimerHandle:
        handle = TimerHandle(self._mono + max(0.0, delay), callback)
        with self._cond:
            self._timers.push(handle)
        if delay <= 0:
            self.advance(0)
        return handle

    def advance(self, seconds: float) -> None:
        """Move time forward, firing due timers in order (each at its own instant)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        target = self._mono + seconds
        while True:
            with self._cond:
                nxt = self._timers.next_when()
                if nxt is None or nxt > target:
                    break
                self._now += nxt - self._mono
                self._mono = nxt
                due = self._timers.pop_due(nxt)
                self._cond.notify_all()
            for handle in due:
                _fire(handle)
        with self._cond:
            self._now += target - self._mono
            self._mono = target
            self._cond.notify_all()

    def set(self, when: datetime | float) -> None:
        """Jump to a wall-clock time (forward only), firing timers on the way."""
        ts = when.timestamp() if isinstance(when, datetime) else float(when)
        self.advance(ts - self._now)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        deadline = None if timeout is None else self._mono + timeout
        with self._cond:
            while not event.is_set():
                if deadline is not None and self._mono >= deadline:
                    return False
                # Short real waits so an event set from another thread is noticed promptly.
                self._cond.wait(0.01)
        return True

    def pending_timers(self) -> int:
        with self._cond:
            return sum(1 for _, _, h in self._timers.heap if not h.cancelled)
