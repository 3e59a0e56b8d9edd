"""Signals and waits in PostgreSQL, with the meaning the standard stores give them
(:mod:`taskloom_std.stores.signals`, :mod:`taskloom.api.signals`).

``signals`` keeps the first signal of a name per run (its primary key refuses a second, of any
process or host); ``waits`` keeps each waiting step with its due time, so a resume in another
process goes on waiting until the same time. A run reads ``waiting`` while a step of it waits.
A signal's transaction sends ``[run id, name]`` on :data:`taskloom_postgres.notify.SIGNALS`,
so a step waiting in any process is woken when it commits.

Each function takes an autocommit connection and runs in its own transaction.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from taskloom.api.signals import check_payload
from taskloom_postgres.notify import RUNS, SIGNALS, notify
from taskloom_std.stores.signals import SignalRefused

_WAIT_COLUMNS = ("run_id", "task", "kind", "signal", "started", "due", "schema")
_SELECT_WAIT = f"SELECT {', '.join(_WAIT_COLUMNS)} FROM waits"


def send(conn: psycopg.Connection[Any], run_id: str, name: str, payload: Any,
         sent_by: str) -> None:
    """Record a signal; :class:`SignalRefused` when the run has one of that name already,
    or a step waiting for it refuses the payload."""
    text = json.dumps(payload)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT schema FROM waits WHERE run_id = %s AND signal = %s"
                    " AND ended IS NULL", (run_id, name))
        for (schema,) in cur.fetchall():
            check_payload(json.loads(schema) if schema else None, payload)
        cur.execute("INSERT INTO signals(run_id, name, payload, sent, sent_by)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (run_id, name, text, time.time(), sent_by))
        if cur.rowcount != 1:
            raise SignalRefused(f"run {run_id} already received signal {name!r}; the first "
                                "one is kept")
        notify(cur, SIGNALS, json.dumps([run_id, name]))


def received(conn: psycopg.Connection[Any], run_id: str, name: str) -> tuple[bool, Any]:
    row = conn.execute("SELECT payload FROM signals WHERE run_id = %s AND name = %s",
                       (run_id, name)).fetchone()
    return (True, json.loads(row[0])) if row is not None else (False, None)


def _wait(row: tuple[Any, ...]) -> dict[str, Any]:
    wait = dict(zip(_WAIT_COLUMNS, row, strict=True))
    wait["schema"] = json.loads(wait["schema"]) if wait["schema"] else None
    return wait


def open_wait(conn: psycopg.Connection[Any], run_id: str, task: str) -> dict[str, Any] | None:
    row = conn.execute(f"{_SELECT_WAIT} WHERE run_id = %s AND task = %s AND ended IS NULL",
                       (run_id, task)).fetchone()
    return None if row is None else _wait(row)


def begin_wait(conn: psycopg.Connection[Any], run_id: str, task: str, kind: str,
               signal: str | None, started: float, due: float | None, schema: Any) -> None:
    """Record an open wait and mark its run ``waiting``, in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO waits({', '.join(_WAIT_COLUMNS)}, ended)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, NULL) ON CONFLICT (run_id, task) DO UPDATE"
            " SET kind = excluded.kind, signal = excluded.signal, started = excluded.started,"
            " due = excluded.due, schema = excluded.schema, ended = NULL",
            (run_id, task, kind, signal, started, due, json.dumps(schema) if schema else None),
        )
        cur.execute("UPDATE runs SET status = 'waiting' WHERE id = %s AND status = 'running'",
                    (run_id,))
        notify(cur, RUNS, run_id)


def end_wait(conn: psycopg.Connection[Any], run_id: str, task: str) -> None:
    """Close a wait; the run reads ``running`` again once none of its steps waits."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("UPDATE waits SET ended = %s WHERE run_id = %s AND task = %s"
                    " AND ended IS NULL", (time.time(), run_id, task))
        cur.execute("UPDATE runs SET status = 'running' WHERE id = %s AND status = 'waiting'"
                    " AND NOT EXISTS (SELECT 1 FROM waits WHERE run_id = %s AND ended IS NULL)",
                    (run_id, run_id))
        notify(cur, RUNS, run_id)


def waits(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    return [_wait(r) for r in conn.execute(
        f"{_SELECT_WAIT} WHERE run_id = %s AND ended IS NULL ORDER BY started, task",
        (run_id,)).fetchall()]


def signals(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "name": n, "payload": json.loads(p), "sent": s, "sent_by": b}
            for n, p, s, b in conn.execute(
                "SELECT name, payload, sent, sent_by FROM signals WHERE run_id = %s"
                " ORDER BY sent, name", (run_id,)).fetchall()]


def open_signal_waits(conn: psycopg.Connection[Any],
                      run_ids: list[str]) -> list[tuple[str, str]]:
    """``(run id, signal)`` of every open wait for a signal among ``run_ids``."""
    return [(r, s) for r, s in conn.execute(
        "SELECT run_id, signal FROM waits WHERE run_id = ANY(%s) AND ended IS NULL"
        " AND signal IS NOT NULL", (run_ids,)).fetchall()]
