"""Runs task bodies in worker processes: true parallelism, hard timeouts, forced cancel.

Each worker slot is a dispatcher thread in this process paired with one child process
(``forkserver`` where the platform has it, else ``spawn``: never a plain ``fork`` of a
threaded parent). The dispatcher pickles the body and its dependency results, sends them
over a pipe and waits for the answer; the task's wrappers (timeout, breaker, cache...) run in
the dispatcher, around that round trip.

* The body and its arguments must pickle (module-level functions, not lambdas), and so must
  its result; otherwise the attempt fails with :class:`ProcessPicklingError` naming the task.
  A body that takes ``context`` is refused for the same reason.
* A child that dies (a crash, ``os._exit``, a signal) fails only the task it was running
  (:class:`WorkerCrashed`); the slot starts a new child for its next task.
* ``cancel`` (task cancel, soft timeout) kills the child at once; the slot replaces it.
* Idle workers outlive their run and serve the next one (up to one per CPU are kept), as a
  pool's workers do: module-level state in a worker can outlive a run.
* What the body prints and logs is captured in the child and handed back with its outcome
  when the attempt is capturing (the ``capture`` plugin; see
  :mod:`taskloom_std.observability.capture`); otherwise it goes to the child's streams,
  which are this process's.
* A ``hard`` timeout (``timeout = {hard = 60}``) is enforced here, even without the timeout
  plugin: at the deadline the attempt fails with :class:`~taskloom.TaskTimeout` and the child
  is killed and replaced. Nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import pickle
import sys
import threading
import traceback
from typing import Any

from taskloom import TaskCancelled, TaskloomError, TaskTimeout
from taskloom_std.executors.thread import WorkerPool
from taskloom_std.observability import capture

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_STOP = b""


class ProcessPicklingError(TaskloomError):
    """A task's callable, arguments or result cannot cross the process boundary."""


class WorkerCrashed(TaskloomError):
    """The worker process running a task died."""


class RemoteTaskError(TaskloomError):
    """A task raised an exception in a worker that could not be sent back as it was."""


# -- the child side ----------------------------------------------------------------------------
def _child_main(conn: Any) -> None:
    """Loop in the worker process: receive a call, run it, send the outcome back."""
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if message == _STOP:
            return
        conn.send_bytes(_child_run(message))


def _child_run(message: bytes) -> bytes:
    name, call, carrier, capture = pickle.loads(message)
    if not carrier:
        return _child_call(name, call, capture)
    # The parent's trace context (the attempt's span): spans the body opens nest under it.
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(carrier))
    try:
        return _child_call(name, call, capture)
    finally:
        context.detach(token)


def _child_call(name: str, call: bytes, capture: tuple[int, int] | None) -> bytes:
    """The outcome, pickled: ``(status, value or error, (text, dropped) or None)``."""
    try:
        fn, kwargs = pickle.loads(call)
    except Exception as exc:
        err: BaseException = ProcessPicklingError(
            f"task {name!r}: the worker process cannot load its callable: "
            f"{type(exc).__name__}: {exc}"
        )
        return pickle.dumps(("err", err, None), _PROTOCOL)
    output = None
    try:
        if capture is None:
            value = _call(fn, kwargs)
        else:
            from taskloom_std.observability.capture import Collect

            with Collect(*capture) as collected:
                try:
                    value = _call(fn, kwargs)
                finally:
                    output = collected.result()
    except BaseException as exc:
        return _dump_error(name, exc, output)
    try:
        return pickle.dumps(("ok", value, output), _PROTOCOL)
    except Exception as exc:
        err = ProcessPicklingError(
            f"task {name!r}: its result cannot be pickled back from the worker process: "
            f"{type(exc).__name__}: {exc}"
        )
        return pickle.dumps(("err", err, output), _PROTOCOL)


def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    value = fn(**kwargs)
    if asyncio.iscoroutine(value):
        value = asyncio.run(value)
    return value


def _dump_error(name: str, exc: BaseException, output: tuple[str, int] | None) -> bytes:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    note = f"in worker process {os.getpid()}:\n{text}"
    try:
        notes = exc.__dict__.setdefault("__notes__", [])
        notes.append(note)
        data = pickle.dumps(("err", exc, output), _PROTOCOL)
        pickle.loads(data)  # an exception class that cannot be rebuilt must not reach the parent
        return data
    except Exception:
        err = RemoteTaskError(f"task {name!r} raised {type(exc).__name__}: {exc}")
        err.__dict__["__notes__"] = [note]
        return pickle.dumps(("err", err, output), _PROTOCOL)


# -- the parent side -------------------------------------------------------------------------
class _Slot:
    """One dispatcher thread's child process."""

    __slots__ = ("attempt", "conn", "killed", "lock", "proc")

    def __init__(self) -> None:
        self.proc: Any = None
        self.conn: Any = None
        self.attempt: Any = None
        self.killed = False
        self.lock = threading.Lock()


class ProcessExecutor(WorkerPool):
    """Worker processes, one per slot, up to ``max_workers`` (default: the CPU count).

    ``context``: the multiprocessing start method, ``forkserver`` (default where available)
    or ``spawn``.
    """

    name = "process"
    #: The timeout plugin leaves ``hard`` limits to this executor.
    hard_timeouts = True

    def __init__(self, max_workers: int | None = None, context: str | None = None) -> None:
        super().__init__(max_workers)
        methods = multiprocessing.get_all_start_methods()
        if context is None:
            context = "forkserver" if "forkserver" in methods else "spawn"
        if context not in ("forkserver", "spawn") or context not in methods:
            raise ValueError(
                f"process executor: context must be 'forkserver' or 'spawn' (available here: "
                f"{', '.join(m for m in methods if m != 'fork')}), got {context!r}"
            )
        self._method = context
        self._ctx = multiprocessing.get_context(context)
        if context == "forkserver":
            # Children forked from a server that already imported this module start in
            # milliseconds instead of importing taskloom each. No effect once it runs.
            self._ctx.set_forkserver_preload([__name__])
        self._slots: list[_Slot] = []

    @staticmethod
    def default_workers() -> int:
        return os.cpu_count() or 1

    def submit(self, attempt: Any) -> None:
        with self._cond:
            if self._enqueue(attempt):
                slot = _Slot()
                t = threading.Thread(
                    target=self._dispatcher, args=(slot,),
                    name=f"taskloom-process-{len(self._threads)}", daemon=True,
                )
                self._slots.append(slot)
                self._threads.append(t)
                t.start()

    def cancel(self, attempt: Any) -> None:
        for slot in list(self._slots):
            with slot.lock:
                if slot.attempt is attempt and slot.proc is not None:
                    slot.killed = True
                    slot.proc.kill()
                    return

    def _dispatcher(self, slot: _Slot) -> None:
        try:
            while True:
                attempt = self._take()
                if attempt is None:
                    return
                remote = functools.partial(self._remote, slot, attempt)
                try:
                    if attempt.plan.wrappers:
                        value, error = attempt.wrap(remote)(), None
                    else:
                        value, error = remote(), None
                except BaseException as exc:
                    value, error = None, exc
                attempt.done(value, error)
        finally:
            self._stop_child(slot)

    def _remote(self, slot: _Slot, attempt: Any) -> Any:
        task = attempt.task
        plan = attempt.plan
        if plan.body is None:
            return None
        if plan.wants_context:
            raise ProcessPicklingError(
                f"task {task.name!r}: a body run by the process executor cannot take "
                "'context' (it does not cross process boundaries)"
            )
        buf = capture.current()
        try:
            call = pickle.dumps((plan.body, attempt.kwargs()), _PROTOCOL)
            message = pickle.dumps((task.name, call, _trace_carrier(), capture.request()),
                                   _PROTOCOL)
        except Exception as exc:
            raise ProcessPicklingError(
                f"task {task.name!r}: its callable or arguments cannot be pickled for the "
                f"process executor (use a module-level function): {type(exc).__name__}: {exc}"
            ) from exc
        hard = _hard_timeout(task)
        with slot.lock:
            if attempt.token.cancelled:
                raise TaskCancelled(f"task {task.name!r} {attempt.token.reason or 'cancelled'}")
            if slot.proc is None:
                self._start_child(slot)
            slot.attempt = attempt
            slot.killed = False
            proc, conn = slot.proc, slot.conn
        timer = None
        if hard is not None:
            run = attempt.run
            timer = run.clock.call_later(
                hard, functools.partial(_expire, run, attempt, hard)
            )
        try:
            conn.send_bytes(message)
            data = conn.recv_bytes()
        except (EOFError, OSError):
            data = None
        finally:
            if timer is not None:
                timer.cancel()
            with slot.lock:
                slot.attempt = None
                killed = slot.killed
        if data is None:
            proc.join()
            with slot.lock:
                slot.proc = slot.conn = None
            conn.close()
            if killed:
                raise TaskCancelled(
                    f"task {task.name!r}: worker process {proc.pid} was killed "
                    f"({attempt.token.reason or 'cancelled'})"
                )
            raise WorkerCrashed(
                f"task {task.name!r}: worker process {proc.pid} died "
                f"(exit code {proc.exitcode})"
            )
        status, value, output = pickle.loads(data)
        if output is not None and buf is not None:
            buf.absorb(*output)
        if status == "ok":
            return value
        raise value

    def _start_child(self, slot: _Slot) -> None:
        spare = _take_spare(self._method)
        if spare is not None:
            slot.proc, slot.conn = spare
            return
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(  # type: ignore[attr-defined]
            target=_child_main, args=(child,), name="taskloom-worker", daemon=True
        )
        proc.start()
        child.close()
        slot.proc, slot.conn = proc, parent

    def _stop_child(self, slot: _Slot) -> None:
        with slot.lock:
            proc, conn = slot.proc, slot.conn
            slot.proc = slot.conn = None
        if proc is None or _give_spare(self._method, proc, conn):
            return
        try:
            conn.send_bytes(_STOP)
        except OSError:
            pass
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        conn.close()

    def shutdown(self, wait: bool = True) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        if not wait:
            # Overrunning attempts are not waited for: their processes go now.
            for slot in list(self._slots):
                with slot.lock:
                    if slot.attempt is not None and slot.proc is not None:
                        slot.killed = True
                        slot.proc.kill()
            return
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join()


def _trace_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (``traceparent``), when OpenTelemetry is
    in use here; the child attaches it around the body."""
    if "opentelemetry.context" not in sys.modules:
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


# Idle worker processes left by finished runs, reused by the next executor of the same kind:
# an engine that runs again (a manager, a scheduler) does not pay for new processes.
_spares: dict[str, list[tuple[Any, Any]]] = {}
_spares_lock = threading.Lock()
_MAX_SPARES = max(2, os.cpu_count() or 1)


def _take_spare(method: str) -> tuple[Any, Any] | None:
    with _spares_lock:
        pool = _spares.get(method, [])
        while pool:
            proc, conn = pool.pop()
            if proc.is_alive():
                return proc, conn
            conn.close()
    return None


def _give_spare(method: str, proc: Any, conn: Any) -> bool:
    if not proc.is_alive():
        return False
    with _spares_lock:
        pool = _spares.setdefault(method, [])
        if len(pool) >= _MAX_SPARES:
            return False
        pool.append((proc, conn))
    return True


def _hard_timeout(task: Any) -> float | None:
    value = task.options.get("timeout") if task.options else None
    if value is None:
        return None
    from taskloom_std.policies.timeout import parse_timeout

    return parse_timeout(value, f"task {task.name!r}: timeout")[1]


def _expire(run: Any, attempt: Any, seconds: float) -> None:
    run.fail_attempt(attempt, TaskTimeout(attempt.task.name, seconds))
