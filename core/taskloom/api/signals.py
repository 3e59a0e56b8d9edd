"""Waiting steps: a task that waits for a named signal (an approval, an outside event) or
for a time (a durable timer), without holding a worker.

A waiting step runs on the ``wait`` executor (standard plugins): its attempt holds no worker
thread and does not count against ``max_workers``; it completes when the signal arrives (its
payload is the result), when the time comes (the result is the time waited until, UTC), or
fails with :class:`WaitTimedOut` after its timeout. The store records the wait (the run reads
``waiting``), its due time and every signal sent, so a process may exit or be killed while a
step waits: ``taskloom resume RUN`` continues the run, the same wait goes on until the same
due time, and a signal sent meanwhile is taken at once. Nothing that completed runs again.

Signals are sent with ``taskloom signal RUN NAME --data JSON``, ``engine.signal(run_id,
name, payload)`` or the store's ``send_signal`` (what a dashboard calls). The first signal of
a name is kept; a later one of the same name is refused. A payload ``schema`` maps field
names to types (``str``, ``int``, ``float``, ``bool``, ``list``, ``table``, ``any``); a
field name ending in ``?`` is optional. A payload that does not match is refused when sent
to a step already waiting, and fails the step when it was sent before the step began.

A run whose process is gone is continued by ``taskloom resume RUN`` or, once its wait is
satisfied (its signal arrived, or its due time passed), by any long-lived process holding
the store: :func:`resume_satisfied_runs` (once) or a :class:`WaitResumer` (every few
seconds; ``taskloom schedule`` runs one). Each run is claimed first, so two such processes,
or one and a manual resume, never run it twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.api.params import substitute
from taskloom.kernel.errors import ConfigError, TaskloomError
from taskloom.kernel.recording import RunSummary
from taskloom.kernel.states import TERMINAL, TaskState
from taskloom.kernel.task import Task

log = logging.getLogger("taskloom.signals")

#: The executor waiting steps run on, and the task option that says what they wait for.
EXECUTOR = "wait"
OPTION = "wait"
SCHEMA_TYPES = ("str", "int", "float", "bool", "list", "table", "any")
_CHECKS: dict[str, Any] = {
    "str": str, "int": int, "float": (int, float), "bool": bool, "list": list,
    "table": dict,
}


class WaitTimedOut(TaskloomError):
    """A waiting step's timeout passed before its signal arrived."""


class PayloadInvalid(TaskloomError):
    """A signal's payload does not match the waiting step's schema."""


@dataclass(frozen=True)
class Wait:
    """What a step waits for: a ``signal`` (with an optional ``timeout`` in seconds and a
    payload ``schema``), ``sleep`` seconds from when it first began, or ``until`` a time (a
    timezone-aware datetime, an ISO string, or ``"{params.NAME}"``)."""

    signal: str | None = None
    timeout: float | None = None
    schema: Mapping[str, str] | None = None
    sleep: float | None = None
    until: Any = None

    @property
    def kind(self) -> str:
        return "signal" if self.signal is not None else "timer"

    def due_at(self, started: float, params: Mapping[str, Any]) -> float | None:
        """When the wait ends by itself (POSIX seconds): the sleep's or the timeout's end,
        the ``until`` time; None for a signal without a timeout."""
        if self.sleep is not None:
            return started + self.sleep
        if self.until is not None:
            return _instant(substitute(self.until, params))
        if self.timeout is not None:
            return started + self.timeout
        return None


def _instant(value: Any) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ConfigError([f"wait_until: expected a date and time, got {value!r}"])
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is local time
    return float(value.timestamp())


def parse_wait(value: Any, where: str = "wait") -> Wait:
    """The ``wait`` task option as a :class:`Wait`; :class:`ConfigError` naming the key."""
    if isinstance(value, Wait):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError([f"{where}: expected a table, got {value!r}"])
    known = ("signal", "timeout", "schema", "sleep", "until")
    problems = [f"{where}.{k}: unknown key; known: {', '.join(known)}"
                for k in value if k not in known]
    signal, timeout = value.get("signal"), value.get("timeout")
    schema, sleep, until = value.get("schema"), value.get("sleep"), value.get("until")
    given = [k for k in ("signal", "sleep", "until") if value.get(k) is not None]
    if len(given) != 1:
        problems.append(f"{where}: give one of signal, sleep or until (got "
                        f"{', '.join(given) or 'none'})")
    if signal is not None and (not isinstance(signal, str) or not signal):
        problems.append(f"{where}.signal: expected a signal name, got {signal!r}")
    for key, number in (("timeout", timeout), ("sleep", sleep)):
        if number is not None and (isinstance(number, bool) or not isinstance(
                number, (int, float)) or number < 0):
            problems.append(f"{where}.{key}: expected seconds >= 0, got {number!r}")
    if timeout is not None and signal is None:
        problems.append(f"{where}.timeout: only a signal wait has a timeout")
    if schema is not None:
        problems += schema_problems(schema, f"{where}.schema")
    if until is not None and not isinstance(until, (str, dt.date)):
        problems.append(f"{where}.until: expected a date and time, got {until!r}")
    if isinstance(until, str) and not until.startswith("{params."):
        try:
            dt.datetime.fromisoformat(until)
        except ValueError:
            problems.append(f"{where}.until: expected an ISO date and time or "
                            f"\"{{params.NAME}}\", got {until!r}")
    if problems:
        raise ConfigError(problems)
    return Wait(signal, None if timeout is None else float(timeout), schema,
                None if sleep is None else float(sleep), until)


def schema_problems(schema: Any, where: str = "schema") -> list[str]:
    if not isinstance(schema, Mapping):
        return [f"{where}: expected a table of field = type, got {schema!r}"]
    return [f"{where}.{field}: type must be one of {', '.join(SCHEMA_TYPES)}, got {kind!r}"
            for field, kind in schema.items() if kind not in SCHEMA_TYPES]


def check_payload(schema: Mapping[str, str] | None, payload: Any) -> None:
    """:class:`PayloadInvalid` naming each field of ``payload`` that ``schema`` refuses."""
    if not schema:
        return
    if not isinstance(payload, Mapping):
        raise PayloadInvalid(f"the payload must be an object with {', '.join(schema)}, "
                             f"got {payload!r:.80}")
    problems = []
    for field, kind in schema.items():
        name = field.rstrip("?")
        if name not in payload:
            if not field.endswith("?"):
                problems.append(f"{name!r} is missing")
            continue
        check = _CHECKS.get(kind)
        value = payload[name]
        if check is not None and (not isinstance(value, check) or (
                kind in ("int", "float") and isinstance(value, bool))):
            problems.append(f"{name!r} must be {kind}, got {value!r:.40}")
    if problems:
        raise PayloadInvalid("payload refused: " + "; ".join(problems))


def wait_for(name: str, signal: str, *, timeout: float | None = None,
             schema: Mapping[str, str] | None = None, **task: Any) -> Task:
    """A step that waits for ``signal`` (its payload becomes the result)."""
    wait = parse_wait({"signal": signal, "timeout": timeout, "schema": schema})
    return Task(name, executor=EXECUTOR, options={OPTION: wait}, **task)


def sleep(name: str, seconds: float, **task: Any) -> Task:
    """A step that waits ``seconds`` from when it first began, across restarts."""
    return Task(name, executor=EXECUTOR, options={OPTION: parse_wait({"sleep": seconds})},
                **task)


def wait_until(name: str, when: Any, **task: Any) -> Task:
    """A step that waits until ``when`` (a datetime, ISO text or ``"{params.NAME}"``)."""
    return Task(name, executor=EXECUTOR, options={OPTION: parse_wait({"until": when})},
                **task)


# -- continuing waiting runs whose process is gone ----------------------------------------------
#: What a resumer needs to continue a recorded run: its rebuilt tasks and ``when`` conditions,
#: or None to leave the run alone (a run of another workflow).
Rebuild = Callable[[Any], "tuple[Sequence[Task], Mapping[str, Any]] | None"]

#: How often a resumed run's flow looks at its held tasks, in seconds.
_STEP = 0.05


def process_gone(record: Any) -> bool:
    """Whether the process that last ran ``record`` (a store's run record) is known to be
    gone: it ran on this host and its pid no longer exists. A run of this very process, or
    of another host, is not (that process, or a resume there, continues it)."""
    pid, host = getattr(record, "pid", None), getattr(record, "host", None)
    if pid is None or host != socket.gethostname() or pid == os.getpid():
        return False
    import psutil  # the pid check (a dependency of taskloom)

    return not psutil.pid_exists(pid)


def satisfied_waits(store: Any, run_id: str, now: float) -> list[dict[str, Any]]:
    """The open waits of run ``run_id`` that can end now: their signal was sent, or their
    due time (a timer's end, a signal's timeout) is at or before ``now``."""
    waits: list[dict[str, Any]] = getattr(store, "waits", lambda _: [])(run_id)
    ready = []
    for wait in waits:
        signal, due = wait.get("signal"), wait.get("due")
        if (signal is not None and store.received(run_id, signal)[0]) or (
                due is not None and due <= now):
            ready.append(wait)
    return ready


#: The recorded statuses of a run that did not finish (a resume continues it).
UNFINISHED = ("waiting", "running", "interrupted")


def run_satisfied(store: Any, run_id: str, now: float) -> bool:
    """Whether run ``run_id``, or one of its child runs (subflows: ``<id>.<task>``), has a
    satisfied wait (:func:`satisfied_waits`)."""
    find = getattr(store, "find", None)
    children = list(find(run_id + ".")) if find is not None else []
    return any(satisfied_waits(store, rid, now) for rid in (run_id, *children))


def satisfied_runs(store: Any, now: float, *, page: int = 200) -> list[Any]:
    """The records of the unfinished runs whose process is gone and that have a satisfied
    wait (:func:`satisfied_waits`), oldest first. A child run (a subflow's) that waits
    stands for its top parent: resuming the parent resumes the child. A store that keeps no
    run list or no waits has none."""
    runs_page = getattr(store, "runs_page", None)
    if runs_page is None or not hasattr(store, "waits"):
        return []
    found: dict[str, Any] = {}
    offset = 0
    while True:
        records = list(runs_page(limit=page, offset=offset, status="waiting").runs)
        for record in records:
            if record.status != "waiting" or not satisfied_waits(store, record.id, now):
                continue
            top = record
            for _ in range(32):  # deeper than any subflow nesting allowed
                parent_id = getattr(top, "parent_id", None)
                parent = store.run(parent_id) if parent_id else None
                if parent is None:
                    break
                top = parent
            if top.status in UNFINISHED and process_gone(top):
                found.setdefault(top.id, top)
        if len(records) < page:
            break
        offset += page
    return list(reversed(found.values()))


class WaitResumer:
    """Continues, on ``engine``, the waiting runs whose process is gone once their wait is
    satisfied, each on a thread of its own until it ends (or waits again, in this process).

    ``rebuild(record)`` gives a run's tasks and conditions (fresh ones for every call), or
    None to leave it. :meth:`check` looks once; :meth:`start` looks every ``every`` seconds
    of the engine's clock until :meth:`stop`. A run is claimed before it is resumed and
    looked at again once claimed: one that another process holds or has continued is left.
    """

    def __init__(self, engine: Any, rebuild: Rebuild) -> None:
        self.engine = engine
        self.rebuild = rebuild
        #: The summaries of the runs this resumer continued and that ended, by run id.
        self.finished: dict[str, RunSummary] = {}
        #: Why a run could not be continued (a rebuild or a resume that raised), by run id.
        self.errors: dict[str, BaseException] = {}
        self._lock = threading.Lock()
        self._live: dict[str, Any] = {}  # run id -> (Run, Flow), while this resumer drives it
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._looper: threading.Thread | None = None

    def check(self, now: float | None = None) -> list[str]:
        """Start continuing the runs satisfied at ``now`` (default: the engine's clock);
        the ids of those started."""
        store = self.engine.store
        if store is None:
            return []
        when = self.engine.clock.time() if now is None else now
        started = []
        for record in satisfied_runs(store, when):
            with self._lock:
                if record.id in self._threads or self._stop.is_set():
                    continue
                thread = threading.Thread(target=self._resume, args=(record, when),
                                          name=f"taskloom-resume-{record.id}", daemon=True)
                self._threads[record.id] = thread
            thread.start()
            started.append(record.id)
        return started

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the runs started so far to end; False when ``timeout`` passed first."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    def start(self, every: float = 1.0) -> None:
        """Call :meth:`check` every ``every`` seconds (of the engine's clock) on a thread."""
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
            raise TaskloomError(f"every must be a positive number of seconds, got {every!r}")

        def loop() -> None:
            clock = self.engine.clock
            while not self._stop.is_set():
                began = clock.monotonic()
                try:
                    self.check()
                except Exception as exc:  # a store that cannot be read now: try again later
                    log.warning("looking for waiting runs to continue: %s", exc)
                # From when the look began: time that passed during it counts.
                clock.wait(self._stop, max(0.0, began + every - clock.monotonic()))

        self._looper = threading.Thread(target=loop, name="taskloom-wait-resumer", daemon=True)
        self._looper.start()

    def stop(self, reason: str = "stopped", *, cancel_running: bool = False) -> None:
        """Look no more, and stop the runs being continued: their waiting steps stay
        recorded (a later resume goes on waiting), other running tasks finish (or are
        cancelled with ``cancel_running``); the runs are recorded as stopped by ``reason``.
        """
        self._stop.set()
        looper, self._looper = self._looper, None
        if looper is not None:
            looper.join()
        with self._lock:
            live = list(self._live.values())
        for run, flow in live:
            flow.stop()
            run.interrupt(reason)
            for task in list(run.tasks.values()):
                if task.status in TERMINAL or (task.status is TaskState.RUNNING and not
                                               cancel_running and task.executor != EXECUTOR):
                    continue
                run.cancel_task(task)
        self.join()

    def _resume(self, record: Any, now: float) -> None:
        try:
            summary = resume_waiting_run(self.engine, record, self.rebuild, now,
                                         on_open=self._opened)
        except Exception as exc:
            log.error("run %s could not be continued: %s: %s", record.id,
                      type(exc).__name__, exc)
            self.errors[record.id] = exc
            summary = None
        with self._lock:
            self._live.pop(record.id, None)
            self._threads.pop(record.id, None)
            if summary is not None:
                self.finished[record.id] = summary

    def _opened(self, run: Any, flow: Any) -> None:
        with self._lock:
            self._live[run.id] = (run, flow)
        if self._stop.is_set():
            flow.stop()


def resume_waiting_run(engine: Any, record: Any, rebuild: Rebuild, now: float | None = None,
                       *, on_open: Callable[[Any, Any], None] | None = None) -> RunSummary | None:
    """Continue the run ``record`` on ``engine`` when it still is unfinished, its process
    gone and a wait of it (or of a child run) satisfied: claimed first (another holder:
    left alone), driven to its end here; its summary, or None when it was left."""
    from taskloom.api.workflows import Flow

    store = engine.store
    built = rebuild(record)
    if built is None:
        return None
    tasks, conditions = built
    try:
        _, release = engine.claim(record.id, record.workflow, on_conflict="error")
    except TaskloomError:
        return None  # running (or being resumed) in another process
    try:
        when = engine.clock.time() if now is None else now
        again = store.run(record.id)
        if (again is None or again.status not in UNFINISHED or not process_gone(again)
                or not run_satisfied(store, record.id, when)):
            return None
        run = engine.open_resumed_run(record.id, name=record.workflow)
        flow = Flow(run, list(tasks), conditions)
        if on_open is not None:
            on_open(run, flow)
        try:
            flow.start()
            while not flow.step(_STEP):
                pass
        except BaseException:
            run.cancel()
            run.close()
            raise
        summary: RunSummary = run.close()
        log.info("run %s continued (a wait was satisfied): %s", record.id, summary.status)
        return summary
    finally:
        release()


def resume_satisfied_runs(engine: Any, rebuild: Rebuild, now: float | None = None,
                          timeout: float | None = None) -> dict[str, RunSummary]:
    """Continue every waiting run of ``engine``'s store whose process is gone and whose
    wait is satisfied (see :class:`WaitResumer`), and wait for them to end (up to
    ``timeout``); the summaries of those that ended, by run id."""
    resumer = WaitResumer(engine, rebuild)
    resumer.check(now)
    resumer.join(timeout)
    for run_id, error in resumer.errors.items():
        raise TaskloomError(f"run {run_id} could not be continued: {error}") from error
    return dict(resumer.finished)
