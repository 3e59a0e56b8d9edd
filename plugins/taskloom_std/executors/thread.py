"""The default executor: a pool of worker threads that loop, no Future per task."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from taskloom import Executor


class WorkerPool(Executor):
    """Attempts queued for worker threads that loop (the thread and process executors)."""

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self._work: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._shutdown = False

    def _enqueue(self, attempt: Any) -> bool:
        """Queue ``attempt`` (the caller holds ``_cond``); True when a worker should start."""
        work = self._work
        work.append(attempt)
        if self._idle:
            self._cond.notify()
        # A notified worker counts as idle until it wakes: compare the queued work with
        # the idle workers, or a second submit in that window waits behind a long task.
        return len(work) > self._idle and len(self._threads) < self.max_workers

    def _take(self) -> Any | None:
        """The next queued attempt, waiting for one; None once the pool shuts down."""
        work, cond = self._work, self._cond
        with cond:
            while not work:
                if self._shutdown:
                    return None
                self._idle += 1
                cond.wait()
                self._idle -= 1
            return work.popleft()


class ThreadExecutor(WorkerPool):
    """Worker threads started on demand, up to ``max_workers``.

    A worker that finishes an attempt reports it; if the engine hands out new work while that
    report is in progress (the dependents it just released), the first piece stays with the
    same worker: a chain runs on one thread with no hand-off.
    """

    name = "thread"

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "taskloom"):
        super().__init__(max_workers)
        self._prefix = thread_name_prefix
        self._local = threading.local()

    def submit(self, attempt: Any) -> None:
        local = self._local
        if getattr(local, "reporting", False) and local.next is None:
            local.next = attempt
            return
        with self._cond:
            if self._enqueue(attempt):
                t = threading.Thread(
                    target=self._worker,
                    name=f"{self._prefix}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(t)
                t.start()

    def _worker(self) -> None:
        local = self._local
        local.next = None
        local.reporting = False
        while True:
            attempt = local.next
            if attempt is None:
                attempt = self._take()
                if attempt is None:
                    return
            else:
                local.next = None
            try:
                value, error = attempt.call(), None
            except BaseException as exc:  # reported, never kills the worker
                value, error = None, exc
            local.reporting = True
            try:
                attempt.done(value, error)
            finally:
                local.reporting = False

    def shutdown(self, wait: bool = True) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        if wait:
            me = threading.current_thread()
            for t in self._threads:
                if t is not me:
                    t.join()
