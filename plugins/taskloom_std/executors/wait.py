"""The ``wait`` executor: steps that wait for a signal or a time (:mod:`taskloom.api.signals`).

An attempt handed to it holds no worker (``holds_worker = False``: the run does not count it
against ``max_workers``). One helper thread per run does everything: it records the wait in
the store (or finds the wait a killed process left, with its due time), completes the
attempt when the signal is there (sent in this process: at once, through the store's
listener; sent by another process: found by polling every ``poll`` seconds, or at once with
a store whose listeners hear every process, ``listens_everywhere``: PostgreSQL) and arms the
run's clock for the due time (a timer's end, a signal's timeout).
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from typing import Any

from taskloom import Executor, TaskCancelled
from taskloom.api.signals import OPTION, Wait, WaitTimedOut, check_payload, parse_wait


class _Waiting:
    __slots__ = ("due", "handle", "wait")

    def __init__(self, wait: Wait, due: float | None) -> None:
        self.wait = wait
        self.due = due
        self.handle: Any = None


class WaitExecutor(Executor):
    """Completes waiting steps from outside any worker (see the module docs)."""

    name = "wait"
    holds_worker = False

    def __init__(self, max_workers: int | None = None, poll: float = 0.5) -> None:
        super().__init__(max_workers)
        if isinstance(poll, bool) or not isinstance(poll, (int, float)) or poll <= 0:
            raise ValueError(f"poll must be a positive number of seconds, got {poll!r}")
        self.poll = float(poll)
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._waiting: dict[Any, _Waiting] = {}
        self._thread: threading.Thread | None = None
        self._run: Any = None
        self._store: Any = None

    def start(self, run: Any) -> None:
        self._run = run
        self._store = run.engine.store
        listen = getattr(self._store, "add_signal_listener", None)
        if listen is not None:
            listen(self._on_signal)
        self._thread = threading.Thread(target=self._loop, name=f"taskloom-wait-{run.id}",
                                        daemon=True)
        self._thread.start()

    def submit(self, attempt: Any) -> None:
        self._jobs.put(("begin", attempt))

    def cancel(self, attempt: Any) -> None:
        self._jobs.put(("cancel", attempt))

    def shutdown(self, wait: bool = True) -> None:
        unlisten = getattr(self._store, "remove_signal_listener", None)
        if unlisten is not None:
            unlisten(self._on_signal)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(("stop",))
            if wait and thread is not threading.current_thread():
                thread.join()

    def _on_signal(self, run_id: str, name: str) -> None:
        if self._run is not None and run_id == self._run.id:
            self._jobs.put(("signal", name))

    # -- the helper thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            polling = not getattr(self._store, "listens_everywhere", False) and any(
                w.wait.signal is not None for w in self._waiting.values())
            try:
                job = self._jobs.get(timeout=self.poll if polling else None)
            except queue.Empty:
                self._check_signals(None)
                continue
            kind = job[0]
            if kind == "stop":
                return
            try:
                if kind == "begin":
                    self._begin(job[1])
                elif kind == "cancel":
                    self._cancel(job[1])
                elif kind == "due":
                    self._due(job[1])
                elif kind == "signal":
                    self._check_signals(job[1])
            except Exception as exc:  # a store failure: the step fails saying why
                attempt = job[1] if kind in ("begin", "due") else None
                if (attempt is not None and attempt in self._waiting) or kind == "begin":
                    self._finish(attempt, None, exc)

    def _begin(self, attempt: Any) -> None:
        run, task = attempt.run, attempt.task
        wait = parse_wait(task.options.get(OPTION), f"task {task.name!r}: {OPTION}")
        store, clock = self._store, run.clock
        if wait.signal is not None and not hasattr(store, "received"):
            raise TypeError(f"task {task.name!r} waits for signal {wait.signal!r}, which "
                            "needs a store that records signals (memory, sqlite or postgres)")
        now = clock.time()
        found = store.open_wait(run.id, task.name) if hasattr(store, "open_wait") else None
        if found is not None:  # left by a process that exited: the same wait goes on
            due = found["due"]
        else:
            due = wait.due_at(now, run.params)
            if hasattr(store, "begin_wait"):
                store.begin_wait(run.id, task.name, wait.kind, wait.signal, now, due,
                                 dict(wait.schema) if wait.schema else None)
        waiting = self._waiting[attempt] = _Waiting(wait, due)
        if wait.signal is not None and self._take(attempt, wait):
            return
        if due is not None:
            waiting.handle = clock.call_later(max(0.0, due - now),
                                              lambda: self._jobs.put(("due", attempt)))

    def _take(self, attempt: Any, wait: Wait) -> bool:
        """Complete ``attempt`` with its signal if it was sent; True if it was."""
        found, payload = self._store.received(attempt.run.id, wait.signal)
        if not found:
            return False
        try:
            check_payload(wait.schema, payload)
        except Exception as exc:
            self._finish(attempt, None, exc)
            return True
        self._finish(attempt, payload, None)
        return True

    def _check_signals(self, name: str | None) -> None:
        for attempt, waiting in list(self._waiting.items()):
            signal = waiting.wait.signal
            if signal is not None and (name is None or name == signal):
                self._take(attempt, waiting.wait)

    def _due(self, attempt: Any) -> None:
        waiting = self._waiting.get(attempt)
        if waiting is None:
            return
        wait = waiting.wait
        if wait.signal is not None:
            if self._take(attempt, wait):
                return
            self._finish(attempt, None, WaitTimedOut(
                f"task {attempt.task.name!r}: no signal {wait.signal!r} within "
                f"{wait.timeout:g}s"))
            return
        until = dt.datetime.fromtimestamp(waiting.due or 0.0, dt.timezone.utc)
        self._finish(attempt, until, None)

    def _cancel(self, attempt: Any) -> None:
        """The run cancelled the step: the recorded wait stays open, so a resume goes on
        waiting until the same time."""
        waiting = self._waiting.pop(attempt, None)
        if waiting is None:
            return
        if waiting.handle is not None:
            waiting.handle.cancel()
        attempt.done(None, TaskCancelled(f"task {attempt.task.name!r} cancelled while waiting"))

    def _finish(self, attempt: Any, value: Any, error: BaseException | None) -> None:
        waiting = self._waiting.pop(attempt, None)
        if waiting is not None and waiting.handle is not None:
            waiting.handle.cancel()
        end = getattr(self._store, "end_wait", None)
        if end is not None:
            try:
                end(attempt.run.id, attempt.task.name)
            except Exception as exc:  # the step's outcome still counts; the record is late
                error = error or exc
        attempt.done(value, error)
