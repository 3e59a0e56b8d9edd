"""The default executor: a pool of worker threads that loop, no Future per task."""

from __future__ import annotations

import threading
from collections import deque
from threading import get_ident
from time import monotonic, perf_counter
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
    """Worker threads started on demand, up to ``max_workers``, and the waiting thread.

    A worker that finishes an attempt reports it; if the engine hands out new work while that
    report is in progress (the dependents it just released), the first piece stays with the
    same worker: a chain runs on one thread with no hand-off.

    The thread waiting on the run (:meth:`drive`) is the dispatcher: it runs the attempts of
    bodies measured as short (mean duration under ``inline_below`` seconds) itself, one after
    the other, so short tasks pay no thread hand-off and no GIL contention, while workers run
    the rest. A body is never run there before it was measured (its first attempts go to the
    workers), ``async def`` bodies never are, and a body that turns out slow does not stall
    the others: while the dispatcher is in one body for ``stall_after`` seconds, a worker
    takes the dispatcher's queue over and that body runs on workers from then on. The
    dispatcher stops (the workers carry on alone) when it had nothing to run for
    ``stall_after`` seconds. ``inline_below = 0`` turns this off.
    """

    name = "thread"
    drive_optional = True

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "taskloom",
                 inline_below: float = 0.0005, stall_after: float = 0.005):
        super().__init__(max_workers)
        if not isinstance(inline_below, (int, float)) or inline_below < 0:
            raise ValueError(f"inline_below must be >= 0 seconds, got {inline_below!r}")
        if not isinstance(stall_after, (int, float)) or stall_after <= 0:
            raise ValueError(f"stall_after must be > 0 seconds, got {stall_after!r}")
        self._prefix = thread_name_prefix
        self._local = threading.local()
        self.inline_below = float(inline_below)
        self.stall_after = float(stall_after)
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # workers wait on it
        self._ready = threading.Condition(lock)  # the dispatcher waits on it
        #: Mean duration of each body (seconds, a moving average), measured where it ran.
        self._cost: dict[Any, float] = {}
        self._inline: deque[Any] = deque()  # attempts for the dispatcher, in submit order
        self._dispatcher = False  # a thread is in drive() taking inline attempts
        self._busy_since = 0.0  # when the dispatcher's current body started; 0: none
        self._current: Any = None  # that body
        self._watcher = False  # an idle worker wakes every stall_after to look for a stall
        self._stuck = False  # the dispatcher's body stalled: nothing is queued to it now
        self._waiting = False  # the dispatcher waits for work (a finished attempt wakes it)
        self._dispatcher_id = 0  # its thread

    def submit(self, attempt: Any) -> None:
        plan = attempt.plan
        cost = self._cost.get(plan.body)
        if (self._dispatcher and not self._stuck and cost is not None
                and cost < self.inline_below and not plan.is_async):  # measured as short
            if get_ident() == self._dispatcher_id:  # released by the dispatcher's own report
                self._inline.append(attempt)
                return
            with self._cond:
                if self._dispatcher and not self._stuck:
                    self._inline.append(attempt)
                    if self._waiting:
                        self._ready.notify()
                    return
        local = self._local
        if getattr(local, "reporting", False) and local.next is None:
            local.next = attempt
            return
        with self._cond:
            if self._enqueue(attempt):
                self._spawn()

    def _spawn(self) -> None:
        """Start a worker (the caller holds ``_cond``)."""
        t = threading.Thread(
            target=self._worker, name=f"{self._prefix}-{len(self._threads)}", daemon=True
        )
        self._threads.append(t)
        t.start()

    def _run(self, attempt: Any) -> tuple[Any, BaseException | None]:
        """Call the attempt and measure its body (a failure is measured as well)."""
        t0 = perf_counter()
        try:
            value, error = attempt.call(), None
        except BaseException as exc:  # reported, never kills the worker
            value, error = None, exc
        elapsed = perf_counter() - t0
        body = attempt.plan.body
        old = self._cost.get(body)
        self._cost[body] = elapsed if old is None else old + (elapsed - old) * 0.25
        return value, error

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
            value, error = self._run(attempt)
            local.reporting = True
            try:
                attempt.done(value, error)
            finally:
                local.reporting = False
            if self._waiting:  # the dispatcher may be waiting for the run to become idle
                with self._cond:
                    self._ready.notify()

    def _take(self) -> Any | None:
        """The next queued attempt. While the dispatcher works, one idle worker watches it:
        a body holding it for ``stall_after`` seconds hands its queue to the workers."""
        work, cond = self._work, self._cond
        with cond:
            while not work:
                if self._shutdown:
                    return None
                self._idle += 1
                if self._dispatcher and not self._watcher:
                    self._watcher = True
                    try:
                        cond.wait(self.stall_after)
                        since = self._busy_since
                        if self._inline and since and perf_counter() - since >= self.stall_after:
                            self._rescue()
                    finally:
                        self._watcher = False
                else:
                    cond.wait()
                self._idle -= 1
            if self._dispatcher:
                cond.notify()  # another idle worker takes the watch over
            return work.popleft()

    def _rescue(self) -> None:
        """The dispatcher is stuck in a slow body: its queue goes to the workers (the caller
        holds ``_cond``). That body counts as long until attempts measured on workers bring
        its mean back down (a stall may be a body gone slow or a thread kept off the CPU)."""
        self._stuck = True
        self._cost[self._current] = max(self._cost.get(self._current, 0.0), self.stall_after)
        while self._inline:
            if self._enqueue(self._inline.popleft()):
                self._spawn()

    def drive(self, run: Any, timeout: float | None) -> None:
        """Run the inline attempts until the run is idle (or ``timeout``): the dispatcher."""
        if self.inline_below <= 0:
            return
        cond, inline, cost = self._cond, self._inline, self._cost
        with cond:
            if self._dispatcher or self._shutdown:
                return
            self._dispatcher, self._dispatcher_id = True, get_ident()
            cond.notify()  # an idle worker starts watching
        deadline = None if timeout is None else monotonic() + timeout
        try:
            while True:
                # Attempts queued by this thread's own reports need no lock: a deque's
                # popleft is atomic, and the rescue takes what is left under the lock.
                try:
                    attempt = inline.popleft()
                except IndexError:
                    attempt = self._wait_inline(run, deadline)
                    if attempt is None:
                        return
                if inline and not self._idle and len(self._threads) < self.max_workers:
                    with cond:  # nobody could watch this body for a stall
                        if not self._idle and len(self._threads) < self.max_workers:
                            self._spawn()
                plan = attempt.plan
                body = plan.body
                self._stuck = False
                self._current = body
                self._busy_since = t0 = perf_counter()
                try:
                    direct = plan.direct
                    value, error = direct() if direct is not None else attempt.call(), None
                except KeyboardInterrupt:
                    raise  # Ctrl-C in the waiting thread stops the run, it is no task's error
                except BaseException as exc:
                    value, error = None, exc
                finally:
                    self._busy_since = 0.0
                    self._stuck = False
                elapsed = perf_counter() - t0
                old = cost.get(body)
                cost[body] = elapsed if old is None else old + (elapsed - old) * 0.25
                attempt.done(value, error)
        finally:
            with cond:
                self._dispatcher = False
                while inline:  # left when the run timed out: the workers take them
                    if self._enqueue(inline.popleft()):
                        self._spawn()

    def _wait_inline(self, run: Any, deadline: float | None) -> Any | None:
        """The next inline attempt, waiting for one; None when the dispatcher should stop:
        the run is idle, the pool shut down, ``deadline`` passed, or nothing short came for
        ``stall_after`` seconds."""
        inline = self._inline
        with self._cond:
            since = None
            while not inline:
                self._stuck = False
                if run.idle() or self._shutdown:
                    return None
                now = monotonic()
                if since is None:
                    since = now
                elif now - since >= self.stall_after:
                    return None  # nothing short to run: the workers carry on alone
                wait = self.stall_after if deadline is None else min(
                    self.stall_after, deadline - now)
                if wait <= 0:
                    return None
                self._waiting = True
                self._ready.wait(wait)
                self._waiting = False
            return inline.popleft()

    def shutdown(self, wait: bool = True) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
            self._ready.notify_all()
        if wait:
            me = threading.current_thread()
            for t in self._threads:
                if t is not me:
                    t.join()
