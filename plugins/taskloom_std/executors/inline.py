"""Runs every attempt in the thread that waits on the run, one at a time: for debugging."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from taskloom import Executor


class InlineExecutor(Executor):
    """One attempt at a time, in the caller's thread, in queue order. Breakpoints just work."""

    name = "inline"

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers not in (None, 1):
            raise ValueError("the inline executor runs one task at a time (max_workers = 1)")
        super().__init__(1)
        self._work: deque[Any] = deque()
        self._cond = threading.Condition()

    def submit(self, attempt: Any) -> None:
        with self._cond:
            self._work.append(attempt)
            self._cond.notify()

    def drive(self, run: Any, timeout: float | None) -> None:
        """Run queued attempts until the run is idle (retries arrive from the timer)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not run.idle():
            with self._cond:
                if not self._work:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
                    continue
                attempt = self._work.popleft()
            try:
                value, error = attempt.call(), None
            except BaseException as exc:
                value, error = None, exc
            attempt.done(value, error)
