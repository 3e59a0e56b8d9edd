"""The ``memory`` store: the library default. Run outcomes and the result cache, in-process.

It records only whole runs (no per-task method), so it adds nothing to a task's path. It keeps the
last ``max_runs`` runs (their summaries hold results alive) and at most ``max_cache`` cache
entries; both are lost when the process exits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import fields
from typing import Any

from taskloom import TaskState
from taskloom.api.scheduling import MemoryScheduleState
from taskloom_std.stores.claims import Busy, check_options, claim_loop, owner_label
from taskloom_std.stores.signals import Listener, MemorySignals

Outcome = tuple[str, bool, Any, "str | None", "str | None"]
#: Each state's name: an enum's ``.value`` is a slow descriptor, read here once per task.
_VALUES = {s: s.value for s in TaskState}
_DONE: Outcome = ("completed", True, None, None, None)


class MemoryStore:
    """Keeps recent runs and cached results in memory."""

    name = "memory"

    def __init__(self, max_runs: int = 1000, max_cache: int = 10_000) -> None:
        self.max_runs = max_runs
        self.max_cache = max_cache
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, tuple[dict[str, Any], dict[str, Outcome]]] = OrderedDict()
        self._cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._schedule = MemoryScheduleState()
        self._claims: dict[str, tuple[str | None, int]] = {}  # run id: (workflow, thread)
        self._params: dict[str, dict[str, Any]] = {}
        self._signals = MemorySignals()
        self._released = threading.Event()

    # -- recording (called by the engine) ------------------------------------------------------
    def record_run_start(self, run: Any) -> None:
        """Nothing is kept until the run ends."""

    def record_run_finish(self, run: Any, summary: Any) -> None:
        outcomes: dict[str, Outcome] = {}
        for t in summary.tasks:
            state = _VALUES[t.status]
            if state == "completed" and t.result is None and t.error is None:
                outcomes[t.name] = _DONE  # one shared tuple: 80 bytes a task on big runs
            else:
                outcomes[t.name] = (state, state == "completed", t.result, t.error, t.error_type)
        record = {f.name: getattr(summary, f.name) for f in fields(summary) if f.name != "tasks"}
        with self._lock:
            self._runs[summary.id] = (record, outcomes)
            self._runs.move_to_end(summary.id)
            self._params[summary.id] = dict(getattr(run, "params", {}))
            while len(self._runs) > self.max_runs:
                self._params.pop(self._runs.popitem(last=False)[0], None)

    # -- what the engine asks --------------------------------------------------------------
    def summary(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._runs.get(run_id)
        return None if found is None else dict(found[0])

    def outcomes(self, run_id: str) -> dict[str, Outcome]:
        with self._lock:
            found = self._runs.get(run_id)
        return {} if found is None else dict(found[1])

    # -- signals and waits (taskloom_std.stores.signals) -------------------------------------
    def send_signal(self, run_id: str, name: str, payload: Any = None,
                    sent_by: str = "api") -> None:
        """Record signal ``name`` for run ``run_id``; ``SignalRefused`` when it cannot be."""
        self._signals.send_signal(run_id, name, payload, sent_by)

    def received(self, run_id: str, name: str) -> tuple[bool, Any]:
        return self._signals.received(run_id, name)

    def open_wait(self, run_id: str, task: str) -> dict[str, Any] | None:
        return self._signals.open_wait(run_id, task)

    def begin_wait(self, run_id: str, task: str, kind: str, signal: str | None,
                   started: float, due: float | None, schema: Any) -> None:
        self._signals.begin_wait(run_id, task, kind, signal, started, due, schema)

    def end_wait(self, run_id: str, task: str) -> None:
        self._signals.end_wait(run_id, task)

    def waits(self, run_id: str) -> list[dict[str, Any]]:
        """The steps of run ``run_id`` waiting now (task, kind, signal, started, due)."""
        return self._signals.waits(run_id)

    def signals(self, run_id: str) -> list[dict[str, Any]]:
        """Every signal sent to run ``run_id`` (name, payload, sent, sent_by)."""
        return self._signals.signals(run_id)

    def add_signal_listener(self, fn: Listener) -> None:
        self._signals.listeners.add(fn)

    def remove_signal_listener(self, fn: Listener) -> None:
        self._signals.listeners.remove(fn)

    def recorded_params(self, run_id: str) -> dict[str, Any]:
        """The parameter values run ``run_id`` started with (a resume runs with them)."""
        with self._lock:
            return dict(self._params.get(run_id, {}))

    def cache_get(self, key: str, now: float) -> tuple[bool, Any]:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return False, None
            if entry[0] <= now:
                del self._cache[key]
                return False, None
            self._cache.move_to_end(key)
            return True, entry[1]

    def cache_put(self, key: str, task: str, value: Any, expires: float) -> None:
        with self._lock:
            self._cache[key] = (expires, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)

    # -- claims (kernel/store.py) ---------------------------------------------------------------
    def claim_run(self, run_id: str, workflow: str | None, *, on_conflict: str = "wait",
                  max_active_runs: int | None = None, on_limit: str = "wait") -> Any:
        """Claim ``run_id`` for this thread (see :mod:`taskloom_std.stores.claims`); returns
        the release. Only this process shares a memory store, so no holder is ever dead."""
        check_options(on_conflict, on_limit, max_active_runs)
        me = threading.get_ident()
        with self._lock:
            held = self._claims.get(run_id)
            if held is not None and held[1] == me:
                return _nothing  # this thread holds it already (run() resuming)

        def attempt() -> Busy | None:
            with self._lock:
                if run_id in self._claims:
                    return Busy("conflict", (owner_label(),))
                if max_active_runs is not None and sum(
                    1 for w, _ in self._claims.values() if w == workflow
                ) >= max_active_runs:
                    return Busy("limit", (owner_label(),))
                self._claims[run_id] = (workflow, me)
                return None

        claim_loop(attempt, run_id, workflow, on_conflict=on_conflict, on_limit=on_limit,
                   max_active_runs=max_active_runs, wake=self._released)

        def release() -> None:
            with self._lock:
                self._claims.pop(run_id, None)
            self._released.set()

        return release

    def schedule_state(self) -> MemoryScheduleState:
        return self._schedule

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """Nothing to release."""


def _nothing() -> None:
    """The release of a claim this thread already held: the outer holder releases it."""
