"""Signals and waits as the stores keep them (:mod:`taskloom.api.signals` says what they mean).

The stores offer the same methods: ``send_signal(run_id, name, payload, sent_by)`` (the
first signal of a name is kept, a later one refused; a payload is checked against the schema
of a step already waiting for it), ``received(run_id, name)`` -> ``(found, payload)``,
``open_wait(run_id, task)``, ``begin_wait(...)``, ``end_wait(run_id, task)``, and for a
dashboard ``waits(run_id)`` (the steps waiting now) and ``signals(run_id)`` (every signal
sent). ``add_signal_listener(fn)`` calls ``fn(run_id, name)`` in the sender's thread after a
signal is recorded in this process, so a step waiting here takes it at once (other processes
poll). A store whose listeners also hear signals sent by other processes says so with
``listens_everywhere = True`` (the PostgreSQL store, through LISTEN/NOTIFY): a step waiting
on it does not poll. The persistent stores also mark a run ``waiting`` while a step of it
waits.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from taskloom import TaskloomError
from taskloom.api.signals import check_payload

Listener = Callable[[str, str], None]


class SignalRefused(TaskloomError):
    """A signal that cannot be taken: sent already, or a payload the waiting step refuses."""


class Listeners:
    """The in-process listeners of a store's signals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: list[Listener] = []

    def add(self, fn: Listener) -> None:
        with self._lock:
            self._fns.append(fn)

    def remove(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._fns:
                self._fns.remove(fn)

    def notify(self, run_id: str, name: str) -> None:
        with self._lock:
            fns = list(self._fns)
        for fn in fns:
            fn(run_id, name)


def _refuse_duplicate(run_id: str, name: str) -> SignalRefused:
    return SignalRefused(f"run {run_id} already received signal {name!r}; the first one "
                         "is kept")


class MemorySignals:
    """Signals and waits of the memory store (lost when the process exits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: dict[tuple[str, str], dict[str, Any]] = {}
        self.open: dict[tuple[str, str], dict[str, Any]] = {}
        self.listeners = Listeners()

    def send_signal(self, run_id: str, name: str, payload: Any = None,
                    sent_by: str = "api") -> None:
        with self._lock:
            if (run_id, name) in self.sent:
                raise _refuse_duplicate(run_id, name)
            for wait in self.open.values():
                if wait["run_id"] == run_id and wait["signal"] == name:
                    check_payload(wait["schema"], payload)
            self.sent[(run_id, name)] = {"run_id": run_id, "name": name, "payload": payload,
                                         "sent": time.time(), "sent_by": sent_by}
        self.listeners.notify(run_id, name)

    def received(self, run_id: str, name: str) -> tuple[bool, Any]:
        with self._lock:
            found = self.sent.get((run_id, name))
        return (False, None) if found is None else (True, found["payload"])

    def open_wait(self, run_id: str, task: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.open.get((run_id, task))
        return None if found is None else dict(found)

    def begin_wait(self, run_id: str, task: str, kind: str, signal: str | None,
                   started: float, due: float | None, schema: Any) -> None:
        with self._lock:
            self.open[(run_id, task)] = {"run_id": run_id, "task": task, "kind": kind,
                                         "signal": signal, "started": started, "due": due,
                                         "schema": schema}

    def end_wait(self, run_id: str, task: str) -> None:
        with self._lock:
            self.open.pop((run_id, task), None)

    def waits(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(w) for w in self.open.values() if w["run_id"] == run_id]

    def signals(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self.sent.values() if s["run_id"] == run_id]


# -- SQLite ------------------------------------------------------------------------------------
def sqlite_send(conn: sqlite3.Connection, run_id: str, name: str, payload: Any,
                sent_by: str) -> None:
    """Record a signal (in its own transaction); :class:`SignalRefused` when it cannot be."""
    text = json.dumps(payload)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM signals WHERE run_id = ? AND name = ?",
                        (run_id, name)).fetchall():
            raise _refuse_duplicate(run_id, name)
        for (schema,) in conn.execute(
            "SELECT schema FROM waits WHERE run_id = ? AND signal = ? AND ended IS NULL",
            (run_id, name),
        ).fetchall():
            check_payload(json.loads(schema) if schema else None, payload)
        conn.execute("INSERT INTO signals(run_id, name, payload, sent, sent_by)"
                     " VALUES (?, ?, ?, ?, ?)", (run_id, name, text, time.time(), sent_by))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def sqlite_received(conn: sqlite3.Connection, run_id: str, name: str) -> tuple[bool, Any]:
    rows = conn.execute("SELECT payload FROM signals WHERE run_id = ? AND name = ?",
                        (run_id, name)).fetchall()
    return (True, json.loads(rows[0][0])) if rows else (False, None)


_WAIT_COLUMNS = "run_id, task, kind, signal, started, due, schema"


def _wait(row: tuple[Any, ...]) -> dict[str, Any]:
    wait = dict(zip(_WAIT_COLUMNS.split(", "), row, strict=True))
    wait["schema"] = json.loads(wait["schema"]) if wait["schema"] else None
    return wait


def sqlite_open_wait(conn: sqlite3.Connection, run_id: str, task: str) -> dict[str, Any] | None:
    rows = conn.execute(f"SELECT {_WAIT_COLUMNS} FROM waits WHERE run_id = ? AND task = ?"
                        " AND ended IS NULL", (run_id, task)).fetchall()
    return _wait(rows[0]) if rows else None


def sqlite_begin_wait(conn: sqlite3.Connection, run_id: str, task: str, kind: str,
                      signal: str | None, started: float, due: float | None,
                      schema: Any) -> None:
    """Record an open wait and mark its run ``waiting``, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(f"INSERT OR REPLACE INTO waits({_WAIT_COLUMNS}, ended)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                     (run_id, task, kind, signal, started, due,
                      json.dumps(schema) if schema else None))
        conn.execute("UPDATE runs SET status = 'waiting' WHERE id = ? AND status = 'running'",
                     (run_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def sqlite_end_wait(conn: sqlite3.Connection, run_id: str, task: str) -> None:
    """Close a wait; the run reads ``running`` again once none of its steps waits."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE waits SET ended = ? WHERE run_id = ? AND task = ?"
                     " AND ended IS NULL", (time.time(), run_id, task))
        conn.execute("UPDATE runs SET status = 'running' WHERE id = ? AND status = 'waiting'"
                     " AND NOT EXISTS (SELECT 1 FROM waits WHERE run_id = ? AND ended IS NULL)",
                     (run_id, run_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def sqlite_waits(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    return [_wait(r) for r in conn.execute(
        f"SELECT {_WAIT_COLUMNS} FROM waits WHERE run_id = ? AND ended IS NULL"
        " ORDER BY started", (run_id,)).fetchall()]


def sqlite_signals(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "name": n, "payload": json.loads(p), "sent": s, "sent_by": b}
            for n, p, s, b in conn.execute(
                "SELECT name, payload, sent, sent_by FROM signals WHERE run_id = ?"
                " ORDER BY sent", (run_id,)).fetchall()]
