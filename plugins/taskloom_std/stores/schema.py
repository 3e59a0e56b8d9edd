"""The SQLite schema, its version number and the migrations that reach it.

``PRAGMA user_version`` holds the schema version and ``PRAGMA application_id`` marks the file
as taskloom's. Opening applies the missing migrations in one transaction. A database from a
newer taskloom, or a file that is not a taskloom database, is refused and never written.

What is recorded and where:

* ``runs``: one row per run id (workflow name, config hash and path, status, times, task
  counts, how often it was resumed, the pid that ran it last, what started it last
  (``trigger``) and the run it continues (``parent_id``)).
* ``events``: every state change of every task, with its wall-clock time, one row per run
  per commit (``data`` is JSON text ``[names, tasks, states, times]``: each task name once,
  then per change the name's index (base64 uint32s), its state (one letter each, in one
  string) and its time (base64 float64s); one row per change, or a JSON string per change,
  would cost more than running a small task). Batches of earlier versions,
  ``[tasks, states, times]`` (a name and a state string per change), are read too.
  :func:`load_events` reads it back and checks its shape. Attempts are the spans from a
  ``running`` event to the next event of the same task.
* ``errors``: the error of each failed, retried or cancelled transition (type, message,
  traceback), keyed by the time of that transition.
* ``results``: the result of each completed task (JSON, a bounded pickle signed with the
  installation's key, or a note saying why it was not stored) and whether it came from the
  cache.
* ``cache``: the result cache (``cache`` task option), by key, with an expiry time.
* ``schedule_state`` and ``schedule_claims``: what schedulers sharing the database know
  about each job, and the unique claim of each fire time. ``schedule_skips``: the fires a
  scheduler skipped (``misfire``: later than the job's grace time; ``overlap``: the job's
  ``max_instances`` runs were still going), the newest :data:`SKIPS_KEPT` per job.
* ``logs``: what each attempt's body printed and logged (the ``capture`` plugin), capped per
  attempt by that plugin.
* ``owners``: the processes that have the database open for writing (pid, host, command),
  so a lock timeout can say who holds it. Read-only history writes nothing.
* ``run_actions``: what was asked of a run from outside its process (``cancel``, ``retry``,
  ``start``), by whom and when, and when the running process handled it. A running process
  polls its pending ``cancel`` rows and cancels cooperatively.
* ``run_claims``: the run ids being run now, by which process (pid, host) and its last
  heartbeat, so a run id runs in one process at a time and ``max_active_runs`` holds across
  processes (:mod:`taskloom_std.stores.claims`). ``runs.overrides`` is the JSON object of
  the ``--set`` and ``TASKLOOM_*`` overrides (dotted key: value) a resume applies again.
* ``signals`` and ``waits``: the signals sent to each run (the first of a name, its JSON
  payload, who sent it) and the steps waiting for a signal or a time (their due time and
  payload schema; ``ended`` once done); a run with an open wait reads ``waiting``.
"""

from __future__ import annotations

import base64
import json
import operator
import sqlite3
import sys
from array import array
from collections.abc import Container
from typing import Any

from taskloom import TaskState

#: Marks the file as a taskloom database ("TLOM").
APPLICATION_ID = 0x544C4F4D

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            workflow TEXT,
            config_hash TEXT,
            config_path TEXT,
            status TEXT NOT NULL,
            started REAL,
            finished REAL,
            duration REAL,
            counts TEXT,
            resumes INTEGER NOT NULL DEFAULT 0,
            pid INTEGER,
            host TEXT
        )""",
        "CREATE INDEX runs_started ON runs(started)",
        """CREATE TABLE events (
            run_id TEXT NOT NULL,
            t REAL NOT NULL,
            data BLOB NOT NULL
        )""",
        "CREATE INDEX events_run ON events(run_id)",
        """CREATE TABLE errors (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            state TEXT NOT NULL,
            t REAL NOT NULL,
            attempt INTEGER,
            error_type TEXT,
            message TEXT,
            traceback TEXT
        )""",
        "CREATE INDEX errors_run ON errors(run_id)",
        """CREATE TABLE results (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            kind TEXT NOT NULL,
            value BLOB,
            note TEXT,
            cache_hit INTEGER NOT NULL DEFAULT 0,
            t REAL NOT NULL,
            PRIMARY KEY (run_id, task)
        ) WITHOUT ROWID""",
        """CREATE TABLE owners (
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            command TEXT,
            since REAL NOT NULL,
            PRIMARY KEY (pid, host)
        )""",
    ),
    2: (
        """CREATE TABLE cache (
            key TEXT PRIMARY KEY,
            task TEXT,
            kind TEXT NOT NULL,
            value BLOB,
            created REAL NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE schedule_state (
            job_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            updated REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE schedule_claims (
            job_id TEXT NOT NULL,
            fire_time REAL NOT NULL,
            owner TEXT NOT NULL,
            claimed REAL NOT NULL,
            PRIMARY KEY (job_id, fire_time)
        ) WITHOUT ROWID""",
    ),
    # Event batches are JSON text from here on (they were pickles): an older taskloom
    # must not open a database it cannot read.
    3: (),
    4: (
        """CREATE TABLE logs (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            t REAL NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (run_id, task, attempt)
        ) WITHOUT ROWID""",
    ),
    5: (
        """CREATE TABLE run_actions (
            id INTEGER PRIMARY KEY,
            run_id TEXT,
            workflow TEXT,
            action TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested REAL NOT NULL,
            handled REAL,
            detail TEXT
        )""",
        "CREATE INDEX run_actions_run ON run_actions(run_id)",
        # The dashboard filters the run list by workflow or status, newest first.
        "CREATE INDEX runs_workflow_started ON runs(workflow, started)",
        "CREATE INDEX runs_status_started ON runs(status, started)",
    ),
    # What started each run (manual, schedule, resume, api) and the run it continues.
    6: (
        "ALTER TABLE runs ADD COLUMN trigger TEXT",
        "ALTER TABLE runs ADD COLUMN parent_id TEXT",
        "CREATE INDEX runs_parent ON runs(parent_id)",
    ),
    7: (
        # One row per run id being run: the process holding it and its last heartbeat.
        """CREATE TABLE run_claims (
            run_id TEXT PRIMARY KEY,
            workflow TEXT,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            claimed REAL NOT NULL,
            heartbeat REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX run_claims_workflow ON run_claims(workflow)",
        # What a resume re-applies: the --set and TASKLOOM_* overrides the run started with.
        "ALTER TABLE runs ADD COLUMN overrides TEXT",
    ),
    8: (
        # The fires a scheduler skipped: too late (misfire) or too many runs going (overlap).
        """CREATE TABLE schedule_skips (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            scheduled_for REAL NOT NULL,
            recorded REAL NOT NULL,
            detail TEXT
        )""",
        "CREATE INDEX schedule_skips_job ON schedule_skips(job_id, id)",
    ),
    # Signals sent to runs, and the steps waiting (for a signal or a time) with their due
    # time, so a wait outlives its process (taskloom_std.stores.signals).
    9: (
        """CREATE TABLE signals (
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            payload TEXT,
            sent REAL NOT NULL,
            sent_by TEXT,
            PRIMARY KEY (run_id, name)
        ) WITHOUT ROWID""",
        """CREATE TABLE waits (
            run_id TEXT NOT NULL,
            task TEXT NOT NULL,
            kind TEXT NOT NULL,
            signal TEXT,
            started REAL NOT NULL,
            due REAL,
            schema TEXT,
            ended REAL,
            PRIMARY KEY (run_id, task)
        ) WITHOUT ROWID""",
    ),
}

#: How many skipped fires ``schedule_skips`` keeps per job (older ones are deleted).
SKIPS_KEPT = 100

#: The version this taskloom writes.
SCHEMA_VERSION = max(MIGRATIONS)


def read_version(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """``(user_version, application_id, number of tables)``; raises DatabaseError on junk.

    Read in one transaction: another process creating the schema between two reads would
    otherwise show tables without the application id.
    """
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    finally:
        if own and conn.in_transaction:
            conn.execute("COMMIT")
    return int(version), int(app), int(tables)


def migrate(conn: sqlite3.Connection, current: int, target: int = SCHEMA_VERSION) -> None:
    """Apply migrations ``current+1 .. target`` in the open transaction."""
    for version in range(current + 1, target + 1):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {target}")


_STATES = frozenset(state.value for state in TaskState)
_TASK, _STATE, _TIME = (operator.itemgetter(i) for i in (1, 2, 3))
#: One letter per state in a batch's state string (never reordered: stored data).
_LETTERS = {TaskState.PENDING: "p", TaskState.WAITING: "w", TaskState.READY: "y",
            TaskState.RUNNING: "r", TaskState.COMPLETED: "c", TaskState.FAILED: "f",
            TaskState.RETRYING: "t", TaskState.CANCELLED: "x", TaskState.SKIPPED: "s"}
#: ``STATE_LETTER.get(id(state), state)``: what a recorder queues for a state change. A
#: letter (an untracked str) rather than the enum member keeps the queued tuples out of the
#: garbage collector's way; looked up by identity, as an Enum member hashes in Python.
STATE_LETTER = {id(state): letter for state, letter in _LETTERS.items()}
_BY_LETTER = {letter: state.value for state, letter in _LETTERS.items()}
_BY_VALUE = {state.value: letter for state, letter in _LETTERS.items()}
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class LegacyEvents(ValueError):
    """An event batch pickled by a taskloom before schema version 3: never unpickled."""


def dump_events(events: list[tuple[Any, ...]]) -> str:
    """One stored batch as JSON text (never a pickle): ``[names, tasks, states, times]``.
    ``events``: ``(run id, task, state, time)`` tuples (see :func:`dump_event_columns`)."""
    # Columns by itemgetter, not zip(*events): that makes an iterator object per change,
    # and so many new objects set off the garbage collector in the middle of a run.
    return dump_event_columns(list(map(_TASK, events)), list(map(_STATE, events)),
                              list(map(_TIME, events)))


def dump_event_columns(tasks: list[str], states: list[Any], times: list[float]) -> str:
    """One stored batch from its columns: the task, the state and the time of each change.

    The writer shares the interpreter with the tasks, so the per-change work is kept to C
    loops: a name is written once per batch, a change is an index, a letter and a float
    (packed little-endian, base64); no decimal floats, no string per change.
    """
    names = list(dict.fromkeys(tasks))
    positions = array("I", map(dict(zip(names, range(len(names)), strict=True)).__getitem__, tasks))
    packed = array("d", times)
    if sys.byteorder == "big":
        positions.byteswap()
        packed.byteswap()
    letters = "".join(states)  # queued as letters (STATE_LETTER): one character each
    if len(letters) != len(states):  # states given as TaskState members or their values
        letters = "".join(_BY_VALUE[str(getattr(state, "value", state))] for state in states)
    # Composed around the names' JSON: the other three are base64 or letters, which need no
    # escaping, and the encoder would scan every character of them.
    return (f'[{_ENCODER.encode(names)},"{base64.b64encode(positions.tobytes()).decode()}",'
            f'"{letters}","{base64.b64encode(packed.tobytes()).decode()}"]')


def load_event_states(data: Any) -> tuple[list[str], list[str]]:
    """The tasks and states of one stored batch, in order, without their times (what the
    latest state of each task needs); ``ValueError`` if damaged, :class:`LegacyEvents` for
    a pickled batch."""
    if isinstance(data, bytes):
        if data[:1] == b"\x80":
            raise LegacyEvents("a pickled event batch of an older taskloom (not loaded)")
        data = data.decode()
    if not isinstance(data, str):
        raise ValueError(f"an event batch stored as {type(data).__name__}")
    batch = json.loads(data)
    if isinstance(batch, list) and len(batch) == 4:  # [names, tasks, states, times]
        events = _load_indexed("", batch)
        return [e[1] for e in events], [e[2] for e in events]
    if not isinstance(batch, list) or len(batch) != 3:
        raise ValueError("an event batch is not [tasks, states, times]")
    tasks, states, _ = batch
    if not isinstance(tasks, list) or not isinstance(states, list) or len(tasks) != len(
        states
    ):
        raise ValueError("an event batch is not [tasks, states, times]")
    if not _STATES.issuperset(states) or not all(isinstance(t, str) for t in tasks):
        raise ValueError("an event batch holds a malformed entry")
    return tasks, states


def load_events(run_id: str, data: Any,
                only: Container[str] | None = None) -> list[tuple[str, str, str, float]]:
    """``(run id, task, state, time)`` tuples of one stored batch (``only``: of those tasks
    alone); ``ValueError`` if damaged.

    Batches written before schema version 3 were pickled; they are not loaded (no pickle
    is read back from a database without a signature): :class:`LegacyEvents`.
    """
    if isinstance(data, bytes):
        if data[:1] == b"\x80":
            raise LegacyEvents("a pickled event batch of an older taskloom (not loaded)")
        data = data.decode()
    if not isinstance(data, str):
        raise ValueError(f"an event batch stored as {type(data).__name__}")
    batch = json.loads(data)
    if isinstance(batch, list) and len(batch) == 4:
        found = _load_indexed(run_id, batch)
        return found if only is None else [e for e in found if e[1] in only]
    if not isinstance(batch, list) or len(batch) != 3:
        raise ValueError("an event batch is not [names, tasks, states, times]")
    tasks, states, times = batch
    if not isinstance(tasks, list) or not isinstance(states, list) or not isinstance(
        times, str
    ):
        raise ValueError("an event batch is not [tasks, states, times]")
    raw = base64.b64decode(times, validate=True)
    if not len(tasks) == len(states) == len(raw) // 8 or len(raw) % 8:
        raise ValueError("an event batch's columns differ in length")
    packed = array("d")
    packed.frombytes(raw)
    if sys.byteorder == "big":
        packed.byteswap()
    out = []
    for task, state, t in zip(tasks, states, packed, strict=True):
        if only is not None and task not in only:
            continue
        if not isinstance(task, str) or state not in _STATES:
            raise ValueError(f"an event batch holds a malformed entry {str((task, state))[:60]!r}")
        out.append((run_id, task, state, t))
    return out


def _load_indexed(run_id: str, batch: list[Any]) -> list[tuple[str, str, str, float]]:
    names, tasks, letters, times = batch
    if not (isinstance(names, list) and isinstance(tasks, str) and isinstance(letters, str)
            and isinstance(times, str)):
        raise ValueError("an event batch is not [names, tasks, states, times]")
    positions = array("I")
    positions.frombytes(base64.b64decode(tasks, validate=True))
    packed = array("d")
    packed.frombytes(base64.b64decode(times, validate=True))
    if sys.byteorder == "big":
        positions.byteswap()
        packed.byteswap()
    if not len(positions) == len(letters) == len(packed):
        raise ValueError("an event batch's columns differ in length")
    if not all(isinstance(name, str) for name in names):
        raise ValueError("an event batch's task names are not all text")
    try:
        return [(run_id, names[i], _BY_LETTER[letter], t)
                for i, letter, t in zip(positions, letters, packed, strict=True)]
    except (IndexError, KeyError) as exc:
        raise ValueError(f"an event batch holds a malformed entry ({exc!r})") from None
