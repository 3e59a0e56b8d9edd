"""The ``postgres`` store: run history, results, the result cache and schedule state in one
PostgreSQL database that many processes and hosts share.

It keeps the SQLite store's promises (``taskloom_std.stores.sqlite``): recording a state change
only appends to an in-memory queue, and a writer thread turns the queues into one transaction
per round, at least every ``flush_interval`` seconds; records a failed round could not write
are kept and written by the next round that succeeds.

Durability (``durability``):

* ``"fast"`` (default): rounds are committed with ``synchronous_commit = off``. A killed
  process loses what was still queued (those tasks run again on resume); a crash of the
  database server can lose its last fraction of a second of commits. The end of a run waits
  for its records to be committed, and fails the run when they could not be.
* ``"safe"``: every successful attempt's result is committed (``synchronous_commit = on``)
  before its task is marked completed; concurrent workers share one commit round.

Results and cache values use the standard plugins' codec (JSON, else a pickle signed with the
installation's key): a pickle without this installation's signature is never loaded, so a
database shared with another installation runs those tasks again instead of running code it
did not write. ``read_only`` opens the history only: nothing is written, no pickle is loaded.

A run records the ``--set`` and ``TASKLOOM_*`` overrides it started with and its parameters
(``runs.overrides``), so ``taskloom resume`` runs it the same way. Signals and waits
(:mod:`taskloom_postgres.signals`) outlive the process: a step waiting in one process is woken
through LISTEN/NOTIFY when a signal is sent from any other, without polling.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import itertools
import json
import logging
import operator
import os
import socket
import threading
import time
import traceback
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg

from taskloom.api.params import from_recorded as params_from_recorded
from taskloom.api.params import recorded as recorded_params
from taskloom_postgres import signals as pgsignals
from taskloom_postgres.claims import RunClaims
from taskloom_postgres.notify import RUNS, SIGNALS, ChannelWatch, Listener, notify
from taskloom_postgres.schema import SCHEMA_VERSION, check_version, migrate, read_version
from taskloom_std.stores import signals as sigstore
from taskloom_std.stores.codec import RESULT_LIMIT, Signer, UntrustedPickle, decode, encode
from taskloom_std.stores.errors import StoreError, StoreVersionError
from taskloom_std.stores.history import RunHistory
from taskloom_std.stores.recording import QueuedRecorder, SafeRecorder
from taskloom_std.stores.schema import dump_events

log = logging.getLogger("taskloom.store")

_CACHE_IN_MEMORY = 1000
#: How often a process with runs in progress looks for cancel requests (seconds).
CANCEL_POLL = 0.5
Outcome = tuple[str, bool, Any, "str | None", "str | None"]


def redact(dsn: str) -> str:
    """The DSN as given when it holds no password (the history's location, which ``taskloom
    resume`` records into); else without the password, for messages only."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<an unreadable DSN>"
    if not info.get("password"):
        return dsn
    host, port, db = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
    user = info.get("user")
    return f"postgresql://{f'{user}@' if user else ''}{host}{f':{port}' if port else ''}/{db}"


class _Reader:
    """A psycopg connection that answers the SQLite history's queries (``?`` placeholders)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql.replace("?", "%s"), params)


class PostgresStore(QueuedRecorder, RunHistory):
    """Records runs in a PostgreSQL database (see the module docstring)."""

    store_name = "postgres"

    name = "postgres"

    def __init__(
        self,
        dsn: str | None = None,
        durability: str = "fast",
        flush_interval: float = 0.2,
        connect_timeout: float = 10.0,
        result_limit: int = RESULT_LIMIT,
        config_path: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        claim_lease: float = 30.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if not dsn or not isinstance(dsn, str):
            raise StoreError("store 'postgres': give the database as store_options.dsn "
                             "(or TASKLOOM_STORE_OPTIONS__DSN), e.g. "
                             "postgresql://user@host/dbname")
        if durability not in ("fast", "safe"):
            raise StoreError(
                f"store 'postgres': durability must be 'fast' or 'safe', got {durability!r}"
            )
        for key, value in (("flush_interval", flush_interval),
                           ("connect_timeout", connect_timeout), ("claim_lease", claim_lease)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 < value < float("inf")
            ):
                raise StoreError(f"store 'postgres': {key} must be a positive number of "
                                 f"seconds, got {value!r}")
        self.dsn = dsn
        self.path = redact(dsn)  # what messages and the history name
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.connect_timeout = float(connect_timeout)
        self.result_limit = int(result_limit)
        self.claim_lease = float(claim_lease)
        self.overrides = dict(overrides or {})
        self.read_only = bool(read_only)
        self.config_path = None if config_path is None else str(Path(config_path).resolve())
        self.signer = Signer()
        self._signal_listeners = sigstore.Listeners()
        self._signals_heard = False  # this store's LISTEN connection passes signals on
        self._active: dict[str, Any] = {}  # runs in progress here, by id: cancel requests
        self._host = socket.gethostname()
        self._read_lock = threading.Lock()
        self._closed = False
        self._failure: BaseException | None = None
        self._schedule: Any = None
        self._listener: Listener | None = None
        self._claims: RunClaims | None = None
        self._reader = self._pg_connect(autocommit=True)
        if self.read_only:
            try:
                version = read_version(self._reader)
                check_version(version, self.path)
            except BaseException:
                self._reader.close()
                raise
            if version is None:
                self._reader.close()
                raise StoreError(f"no run history at {self.path} (runs are recorded by "
                                 "'taskloom run')")
            if version < SCHEMA_VERSION:
                self._reader.close()
                raise StoreVersionError(
                    f"{self.path} has taskloom schema version {version}, written by an older "
                    "taskloom-postgres; history is read without writing: upgrade it with "
                    f"'taskloom db upgrade --db {self.path}'")
            return
        try:
            migrate(self._reader, self.path)
        except psycopg.Error as exc:
            self._reader.close()
            raise StoreError(f"store 'postgres': cannot prepare {self.path}: {exc}") from exc
        except BaseException:
            self._reader.close()
            raise
        self._conn = self._pg_connect(autocommit=False)
        sync = "on" if durability == "safe" else "off"
        self._conn.execute(f"SET synchronous_commit = {sync}")
        self._conn.commit()
        self._events: deque[tuple[Any, ...]] = deque()
        self._results: deque[tuple[Any, ...]] = deque()
        self._errors: deque[tuple[Any, ...]] = deque()
        self._ops: deque[tuple[Any, ...]] = deque()
        self._events_append = self._events.append
        self._results_append = self._results.append
        self._errors_append = self._errors.append
        self._retry: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._cache_mem: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._round_started = 0
        self._round_done = 0
        self._round_ok = 0
        self._closing = False
        self._next_cancel_poll = 0.0
        self._next_heartbeat = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="taskloom-pg-store",
                                        daemon=True)
        self._writer.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def settings(self) -> dict[str, Any]:
        """How this store records (the options besides where): a run records them so that
        its resume records the same way."""
        return {"durability": self.durability, "flush_interval": self.flush_interval,
                "connect_timeout": self.connect_timeout, "result_limit": self.result_limit,
                "claim_lease": self.claim_lease}

    _NEWEST_FIRST = "started DESC NULLS LAST, id"  # PostgreSQL sorts NULLs first in DESC

    def prune(self, older_than: float | None = None, keep: int | None = None, *,
              now: float | None = None, dry_run: bool = False) -> list[str]:
        """Delete runs that ended (or started) more than ``older_than`` seconds before
        ``now``, except the ``keep`` newest, with everything recorded for them; returns
        their ids, oldest first. A running run is never deleted: one running on another
        host always counts as running (its process cannot be checked from here), one whose
        process is gone on this host counts as interrupted. ``dry_run``: delete nothing."""
        doomed = self.prune_candidates(older_than, keep, now)
        if dry_run or not doomed:
            return doomed
        self._writable()
        deleted: list[str] = []
        try:
            with self._read_lock:
                conn = self._live_reader()
                with conn.transaction(), conn.cursor() as cur:
                    for i in range(0, len(doomed), 1000):
                        chunk = doomed[i:i + 1000]
                        # Checked again under row locks: a resume may have started one since.
                        cur.execute("SELECT id, status, pid, host FROM runs WHERE id = ANY(%s)"
                                    " FOR UPDATE", (chunk,))
                        chunk = [run_id for run_id, status, pid, host in cur.fetchall()
                                 if self._status(status, pid, host)
                                 not in ("running", "waiting")]
                        if not chunk:
                            continue
                        for table in _RUN_TABLES:
                            column = "id" if table == "runs" else "run_id"
                            cur.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)",
                                        (chunk,))
                        deleted.extend(chunk)
                    if deleted:
                        notify(cur, RUNS, "")
        except psycopg.Error as exc:
            raise StoreError(f"store 'postgres': cannot delete runs from {self.path}: "
                             f"{str(exc).strip()}") from exc
        order = {run_id: i for i, run_id in enumerate(doomed)}
        return sorted(deleted, key=order.__getitem__)

    @property
    def location(self) -> str:
        """Where the runs are kept (the password left out)."""
        return str(self.path)

    def _pg_connect(self, autocommit: bool) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.dsn, autocommit=autocommit,
                                   connect_timeout=max(1, round(self.connect_timeout)),
                                   application_name="taskloom")
        except psycopg.Error as exc:
            raise StoreError(f"store 'postgres': cannot connect to {self.path}: "
                             f"{str(exc).strip()}") from exc

    # -- recording (called by the engine; cheap: append to a queue) ------------------------
    def record_run_start(self, run: Any) -> None:
        self._writable()
        tasks = [(t.name, tuple(t.dependencies), t.config, t.fn) for t in run.tasks.values()]
        self._active[run.id] = run
        recorded = {**self.overrides, **recorded_params(getattr(run, "params", {}))}
        overrides = json.dumps(recorded, sort_keys=True, default=str) if recorded else None
        self._ops.append(("run_start", run.id, run.name, time.time(), tasks,
                          getattr(run, "trigger", None), getattr(run, "parent_id", None),
                          overrides))
        self._wake.set()

    def record_run_finish(self, run: Any, summary: Any) -> None:
        """Queue the run's end and wait until all of it is committed (raise if it cannot be)."""
        self._active.pop(run.id, None)
        self._ops.append((
            "run_finish", run.id, summary.status, time.time(), summary.duration,
            json.dumps(summary.counts, sort_keys=True),
            getattr(run, "interrupted", None) if summary.status == "interrupted" else None,
        ))
        self.flush()

    # -- writing -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._cond:
                self._round_started += 1
                number = self._round_started
                closing = self._closing
            ok = False
            try:
                self._write_round()
                ok = True
            except BaseException as exc:
                if self._failure is None or str(self._failure) != str(exc):
                    log.error("%s", exc)
                self._failure = exc
            if self._active and not closing:
                self._poll_cancels()
            claims = self._claims
            if claims is not None and claims.busy and not closing:
                self._heartbeat(claims)
            with self._cond:
                self._round_done = number
                if ok:
                    self._round_ok = number
                self._cond.notify_all()
            if closing:
                return

    def _write_round(self) -> None:
        while True:
            batches = self._retry or [
                ("events", self._drain(self._events)),
                ("errors", self._drain(self._errors)),
                ("results", self._drain(self._results)),
                ("ops", self._drain(self._ops)),
            ]
            if not any(rows for _, rows in batches):
                return
            # Kept until committed: a failed round is written again by the next one.
            self._retry = batches
            try:
                self._commit(batches)
            except psycopg.Error as exc:
                pending = sum(len(rows) for _, rows in batches)
                self._reconnect()
                raise StoreError(
                    f"store 'postgres': cannot write to {self.path}: {str(exc).strip()} "
                    f"({type(exc).__name__}; {pending} records not written yet)"
                ) from exc
            self._retry = []
            if self._failure is not None:
                log.warning("store 'postgres': writing to %s works again; nothing was lost",
                            self.path)
                self._failure = None

    def _reconnect(self) -> None:
        """After a failed round: a broken connection is replaced before the next round."""
        if not self._conn.closed and not self._conn.broken:
            with contextlib.suppress(psycopg.Error):
                self._conn.rollback()
            return
        with contextlib.suppress(StoreError, psycopg.Error):
            conn = self._pg_connect(autocommit=False)
            sync = "on" if self.durability == "safe" else "off"
            conn.execute(f"SET synchronous_commit = {sync}")
            conn.commit()
            self._conn = conn

    def _commit(self, batches: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        conn = self._conn
        with conn.transaction(), conn.cursor() as cur:
            touched: dict[str, None] = {}
            for kind, rows in batches:
                if rows:
                    getattr(self, "_write_" + kind)(cur, rows)
                    if kind in ("events", "errors", "results"):
                        touched.update(dict.fromkeys(row[0] for row in rows))
                    elif kind == "ops":
                        touched.update(dict.fromkeys(
                            row[1] for row in rows if row[0] in ("run_start", "run_finish")))
            if touched:  # live views wake when this round commits (notify.RUNS)
                notify(cur, RUNS, " ".join(touched))

    @staticmethod
    def _write_events(cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        out = []
        for run_id, group in itertools.groupby(rows, operator.itemgetter(0)):
            batch = list(group)
            out.append((run_id, batch[0][3], dump_events(batch)))
        cur.executemany("INSERT INTO events(run_id, t, data) VALUES (%s, %s, %s)", out)

    @staticmethod
    def _write_errors(cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        out = []
        for run_id, task, state, t, attempt, etype, message, tb, exc in rows:
            if tb is None and exc is not None and exc.__traceback__ is not None:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            out.append((run_id, task, state.value, t, attempt, etype, message, tb))
        cur.executemany(
            "INSERT INTO errors(run_id, task, state, t, attempt, error_type, message, traceback)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            out,
        )

    def _write_results(self, cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        out = []
        for run_id, task, value, t, hit in rows:
            kind, data, note = encode(value, self.result_limit, self.signer)
            out.append((run_id, task, kind, _bytes(data), note, 1 if hit else 0, t))
        # One statement cannot update a row twice: of two results of one task, the later.
        out = list({(row[0], row[1]): row for row in out}.values())
        # One statement with a column array per field: a statement per row costs a round
        # trip each, and a statement with a placeholder per value is parsed anew each time
        # (too long for psycopg's query cache); the writer shares the interpreter with the
        # tasks.
        cur.execute(_RESULTS_INSERT, [list(column) for column in zip(*out, strict=True)])

    def _write_ops(self, cur: psycopg.Cursor[Any], rows: list[tuple[Any, ...]]) -> None:
        for op in rows:
            kind = op[0]
            if kind == "run_start":
                _, run_id, workflow, t, tasks, trigger, parent, overrides = op
                cur.execute(
                    "INSERT INTO runs(id, workflow, config_hash, config_path, status, started,"
                    " pid, host, trigger, parent_id, overrides)"
                    " VALUES (%s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (id) DO UPDATE SET status = 'running', finished = NULL,"
                    " resumes = runs.resumes + 1, pid = excluded.pid, host = excluded.host,"
                    " workflow = coalesce(excluded.workflow, runs.workflow),"
                    " config_path = coalesce(excluded.config_path, runs.config_path),"
                    " trigger = coalesce(excluded.trigger, runs.trigger),"
                    " parent_id = coalesce(excluded.parent_id, runs.parent_id),"
                    " overrides = coalesce(excluded.overrides, runs.overrides)",
                    (run_id, workflow, self._config_hash(tasks), self.config_path, t,
                     os.getpid(), self._host, trigger, parent, overrides),
                )
            elif kind == "run_finish":
                _, run_id, status, t, duration, counts, reason = op
                cur.execute(
                    "UPDATE runs SET status = %s, finished = %s, counts = %s,"
                    " duration = coalesce(duration, 0) + %s WHERE id = %s",
                    (status, t, counts, duration, run_id),
                )
                if status == "interrupted":  # stopped while a step waits: resume goes on
                    cur.execute(
                        "UPDATE runs SET status = 'waiting' WHERE id = %s AND EXISTS"
                        " (SELECT 1 FROM waits WHERE run_id = %s AND ended IS NULL)",
                        (run_id, run_id),
                    )
                if reason:  # why it was interrupted: the history shows it with the status
                    cur.execute(
                        "INSERT INTO run_actions(run_id, action, requested_by, requested,"
                        " handled) VALUES (%s, 'interrupt', %s, %s, %s)",
                        (run_id, str(reason), t, t),
                    )
            elif kind == "logs":
                _, run_id, task, attempt, t, text = op
                cur.execute(
                    "INSERT INTO logs(run_id, task, attempt, t, text) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (run_id, task, attempt) DO UPDATE SET t = excluded.t,"
                    " text = excluded.text",
                    (run_id, task, attempt, t, text),
                )
            elif kind == "cache_put":
                _, key, task, value, created, expires = op
                ckind, data, note = encode(value, self.result_limit, self.signer)
                if ckind == "missing":
                    log.info("cache: %s not cached: %s", task, note)
                    continue
                cur.execute(
                    "INSERT INTO cache(key, task, kind, value, created, expires)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET"
                    " task = excluded.task, kind = excluded.kind, value = excluded.value,"
                    " created = excluded.created, expires = excluded.expires",
                    (key, task, ckind, _bytes(data), created, expires),
                )

    def flush(self) -> None:
        """Wait until everything recorded so far is committed; raise if it could not be."""
        if self._closed or self.read_only:
            return
        with self._cond:
            target = self._round_started + 1
            self._wake.set()
            while self._round_done < target and self._writer.is_alive():
                self._cond.wait(self.flush_interval)
                self._wake.set()
            written = self._round_ok >= target
        failure = self._failure
        if not written and failure is not None:
            raise failure

    def close(self) -> None:
        """Commit what is queued, stop the writer, and release the connections."""
        if self._closed:
            return
        self._closed = True
        if not self.read_only:
            with self._cond:
                self._closing = True
            self._wake.set()
            self._writer.join()
            if self._claims is not None:
                self._claims.close()
            self._conn.close()
            if self._schedule is not None:
                self._schedule.close()
        if self._listener is not None:
            self._listener.close()
        self._reader.close()
        if not self.read_only and self._failure is not None and self._retry:
            failure, self._failure = self._failure, None
            raise failure

    # -- reading -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        """A connection that sees everything committed (queued records are flushed first)."""
        if not self._closed and not self.read_only:
            with contextlib.suppress(StoreError):
                self.flush()
        with self._read_lock:
            conn = self._live_reader()
            try:
                yield _Reader(conn)
            except psycopg.OperationalError as exc:
                raise StoreError(f"store 'postgres': reading {self.path} failed: "
                                 f"{str(exc).strip()}") from exc
            except (psycopg.DataError, UnicodeDecodeError) as exc:
                raise self.damaged("a query", exc) from exc

    def _live_reader(self) -> psycopg.Connection[Any]:
        """The reading connection, replaced when the server dropped it (a restart, an
        administrator): history keeps working across a reconnect. Called under the lock."""
        try:
            self._reader.execute("SELECT 1")
        except psycopg.OperationalError:
            with contextlib.suppress(psycopg.Error):
                self._reader.close()
            self._reader = self._pg_connect(autocommit=True)
        return self._reader

    def outcomes(self, run_id: str) -> dict[str, Outcome]:
        """Each recorded task's last state: ``(state, result stored, result, error, type)``;
        a task counts as completed only when its result is stored and can be loaded."""
        with self.read() as conn:
            states: dict[str, str] = {}
            for _, task, state, _ in self.events(conn, run_id):
                states[task] = state
            errors: dict[str, tuple[str | None, str | None]] = {}
            for task, etype, message in conn.execute(
                "SELECT task, error_type, message FROM errors WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall():
                errors[task] = (message, etype)
            results = conn.execute(
                "SELECT task, kind, value FROM results WHERE run_id = ?", (run_id,)
            ).fetchall()
        out: dict[str, Outcome] = {}
        for task, state in states.items():
            message, etype = errors.get(task, (None, None))
            out[task] = (state, False, None, message, etype)
        for task, kind, value in results:
            if kind == "missing":
                out[task] = ("completed", False, None, None, None)
                continue
            try:
                result = decode(kind, _bytes(value), self.signer,
                                load_pickles=not self.read_only)
            except UntrustedPickle as exc:
                log.warning("store %s: the result of task %r in run %r is not loaded: %s; "
                            "it counts as not recorded", self.path, task, run_id, exc)
                out[task] = ("completed", False, None, None, None)
                continue
            except Exception as exc:
                raise self.damaged(f"the result of task {task!r} in run {run_id!r}",
                                   exc) from exc
            out[task] = ("completed", True, result, None, None)
        return out

    def find(self, prefix: str) -> list[str]:
        """Run ids starting with ``prefix``."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id FROM runs WHERE left(id, ?) = ? ORDER BY id", (len(prefix), prefix)
            ).fetchall()
        return [r[0] for r in rows]

    def result_previews(self, run_id: str, size: int = 200) -> dict[str, str]:
        """A short text of each stored result: JSON as stored; anything else is described,
        never unpickled."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT task, kind, CASE WHEN kind = 'json' THEN value END, note"
                " FROM results WHERE run_id = ?", (run_id,),
            ).fetchall()
        out: dict[str, str] = {}
        for task, kind, value, note in rows:
            if kind == "json":
                text = bytes(value).decode(errors="replace")
                out[task] = text if len(text) <= size else text[:size] + "…"
            elif kind == "none":
                out[task] = "None"
            elif kind == "pickle":
                out[task] = f"(not JSON: {note or 'pickled'}; not shown)"
            else:
                out[task] = f"(not stored: {note})" if note else "(not stored)"
        return out

    # -- requests from outside the running process ---------------------------------------------
    def record_action(self, action: str, requested_by: str, *, run_id: str | None = None,
                      workflow: str | None = None, detail: str | None = None) -> int:
        """Record that ``requested_by`` asked for ``action`` on a run; the request's id. The
        process running the run (on any host) polls its pending ``cancel`` requests every
        :data:`CANCEL_POLL` seconds."""
        with self._read_lock:
            row = self._live_reader().execute(
                "INSERT INTO run_actions(run_id, workflow, action, requested_by, requested,"
                " detail) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (run_id, workflow, action, requested_by, time.time(), detail),
            ).fetchone()
            # Live views show the run's actions (autocommit: sent at once).
            self._live_reader().execute("SELECT pg_notify(%s, %s)", (RUNS, run_id or ""))
        return int(row[0]) if row else 0

    # -- what a resume applies again ------------------------------------------------------------
    def recorded_overrides(self, run_id: str) -> dict[str, Any]:
        """The ``--set`` and ``TASKLOOM_*`` overrides run ``run_id`` was started with (and
        its parameters, as ``params.NAME`` keys)."""
        with self.read() as conn:
            row = conn.execute("SELECT overrides FROM runs WHERE id = ?", (run_id,)).fetchone()
        try:
            found = json.loads(row[0]) if row and row[0] else {}
        except ValueError as exc:
            raise self.damaged(f"the overrides of run {run_id!r}", exc) from exc
        return dict(found) if isinstance(found, dict) else {}

    def recorded_params(self, run_id: str) -> dict[str, Any]:
        """The parameter values run ``run_id`` started with (a resume runs with them)."""
        return params_from_recorded(self.recorded_overrides(run_id))

    # -- signals and waits (taskloom_std.stores.signals; taskloom_postgres.signals) -------------
    #: The signal listeners hear signals sent by any process (LISTEN/NOTIFY): a waiting step
    #: needs no polling.
    listens_everywhere = True

    def send_signal(self, run_id: str, name: str, payload: Any = None,
                    sent_by: str = "api") -> None:
        """Record signal ``name`` for run ``run_id``; ``SignalRefused`` when it cannot be.
        Every process listening on this database hears of it when it commits."""
        self._writable()
        self._signal_call(pgsignals.send, run_id, name, payload, sent_by)
        self._signal_listeners.notify(run_id, name)

    def received(self, run_id: str, name: str) -> tuple[bool, Any]:
        found: tuple[bool, Any] = self._signal_call(pgsignals.received, run_id, name)
        return found

    def open_wait(self, run_id: str, task: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._signal_call(pgsignals.open_wait, run_id, task)
        return found

    def begin_wait(self, run_id: str, task: str, kind: str, signal: str | None,
                   started: float, due: float | None, schema: Any) -> None:
        self._writable()
        self.flush()  # the run's row is written before it is marked waiting
        self._signal_call(pgsignals.begin_wait, run_id, task, kind, signal, started, due,
                          schema)

    def end_wait(self, run_id: str, task: str) -> None:
        self._writable()
        self._signal_call(pgsignals.end_wait, run_id, task)

    def waits(self, run_id: str) -> list[dict[str, Any]]:
        """The steps of run ``run_id`` waiting now (task, kind, signal, started, due)."""
        found: list[dict[str, Any]] = self._signal_call(pgsignals.waits, run_id)
        return found

    def signals(self, run_id: str) -> list[dict[str, Any]]:
        """Every signal sent to run ``run_id`` (name, payload, sent, sent_by)."""
        found: list[dict[str, Any]] = self._signal_call(pgsignals.signals, run_id)
        return found

    def add_signal_listener(self, fn: sigstore.Listener) -> None:
        """Call ``fn(run_id, name)`` for each signal recorded, by this process (in the
        sender's thread) or by any other (in the listening thread, at its commit)."""
        self._signal_listeners.add(fn)
        if self.read_only:
            return
        listener = self.listener()
        with self._read_lock:
            heard, self._signals_heard = self._signals_heard, True
        if not heard:
            listener.subscribe(SIGNALS, self._heard_signal)

    def remove_signal_listener(self, fn: sigstore.Listener) -> None:
        self._signal_listeners.remove(fn)

    def _heard_signal(self, payload: str | None) -> None:
        """In the listening thread: a signal committed (``[run id, name]``), or ``None``
        after (re)connecting, when one may have been missed: then each open wait of a run
        in progress here is told to look again."""
        if payload is not None:
            try:
                run_id, name = json.loads(payload)
            except (ValueError, TypeError):
                log.debug("store %s: a signal notification not understood: %r", self.path,
                          payload)
                return
            self._signal_listeners.notify(str(run_id), str(name))
            return
        active = list(self._active)
        if not active:
            return
        try:
            found = self._signal_call(pgsignals.open_signal_waits, active)
        except StoreError as exc:  # the next reconnect looks again
            log.debug("store %s: looking for missed signals: %s", self.path, exc)
            return
        for run_id, name in found:
            self._signal_listeners.notify(run_id, name)

    def _signal_call(self, fn: Any, *args: Any) -> Any:
        with self._read_lock:
            conn = self._live_reader()
            try:
                return fn(conn, *args)
            except psycopg.Error as exc:
                raise StoreError(f"store 'postgres': {self.path}: {str(exc).strip()}"
                                 ) from exc

    # -- run claims (kernel/store.py; taskloom_postgres.claims) ---------------------------------
    def watch_changes(self) -> ChannelWatch:
        """A watch woken at every run change committed to this database (any process, any
        host): the dashboard's live views wait on it (``taskloom.api.history
        .WatchableHistory``)."""
        return ChannelWatch(self.listener(), RUNS)

    def listener(self) -> Listener:
        """This store's LISTEN connection (:mod:`taskloom_postgres.notify`), made on first use."""
        with self._read_lock:
            if self._listener is None:
                self._listener = Listener(lambda: self._pg_connect(autocommit=True))
            return self._listener

    def claim_run(self, run_id: str, workflow: str | None, *, on_conflict: str = "wait",
                  max_active_runs: int | None = None, on_limit: str = "wait") -> Any:
        """Claim ``run_id`` in the database for this thread; returns the release. Waits or
        raises :class:`~taskloom_std.stores.claims.RunClaimedError` while the id is held
        (or the workflow has ``max_active_runs`` claims), as ``on_conflict``/``on_limit``
        say; a dead holder's claim (its pid gone on this host, or no heartbeat for
        ``claim_lease`` seconds) is taken over."""
        self._writable()
        listener = self.listener()
        with self._read_lock:
            if self._claims is None:
                self._claims = RunClaims(lambda: self._pg_connect(autocommit=True), self.dsn,
                                         self.path, self.claim_lease, listener)
            claims = self._claims
        release = claims.claim(run_id, workflow, on_conflict=on_conflict,
                               max_active_runs=max_active_runs, on_limit=on_limit)
        self._wake.set()  # the writer starts the heartbeats
        return release

    def _heartbeat(self, claims: RunClaims) -> None:
        """In the writer thread: renew this process's claims every third of the lease."""
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.claim_lease / 3
        claims.heartbeat()

    def _poll_cancels(self) -> None:
        """In the writer thread: cancel the runs in progress here that someone asked to."""
        now = time.monotonic()
        if now < self._next_cancel_poll:
            return
        self._next_cancel_poll = now + CANCEL_POLL
        active = dict(self._active)
        try:
            with self._conn.transaction():
                rows = self._conn.execute(
                    "UPDATE run_actions SET handled = %s WHERE action = 'cancel'"
                    " AND handled IS NULL AND run_id = ANY(%s) RETURNING run_id, requested_by",
                    (time.time(), list(active)),
                ).fetchall()
        except psycopg.Error as exc:  # asked again at the next poll
            log.debug("store %s: polling cancel requests failed: %s", self.path, exc)
            self._reconnect()
            return
        for run_id, requested_by in rows:
            log.warning("run %s: cancelled as requested by %s", run_id, requested_by)
            active[run_id].cancel()

    # -- result cache ----------------------------------------------------------------------------
    def cache_get(self, key: str, now: float) -> tuple[bool, Any]:
        with self._cache_lock:
            entry = self._cache_mem.get(key)
        if entry is not None:
            return (True, entry[1]) if entry[0] > now else (False, None)
        with self._read_lock:
            row = self._live_reader().execute(
                "SELECT kind, value, expires FROM cache WHERE key = %s", (key,)
            ).fetchone()
        if row is None or row[2] <= now:
            return False, None
        try:
            value = decode(row[0], _bytes(row[1]), self.signer, load_pickles=not self.read_only)
        except Exception as exc:  # an unverifiable or damaged entry is a miss
            log.warning("store %s: cache entry %s not used: %s", self.path, key, exc)
            return False, None
        self._remember(key, row[2], value)
        return True, value

    def _remember(self, key: str, expires: float, value: Any) -> None:
        with self._cache_lock:
            mem = self._cache_mem
            mem[key] = (expires, value)
            mem.move_to_end(key)
            if len(mem) > _CACHE_IN_MEMORY:
                mem.popitem(last=False)

    def schedule_state(self) -> Any:
        """The :class:`taskloom.api.scheduling.ScheduleState` on this database (one per store)."""
        from taskloom_postgres.schedule import PostgresScheduleState

        self._writable()
        with self._read_lock:
            if self._schedule is None:
                self._schedule = PostgresScheduleState(self._pg_connect(autocommit=True))
            return self._schedule


#: Every table holding rows of a run (``runs`` by ``id``, the others by ``run_id``).
_RUN_TABLES = ("events", "errors", "results", "logs", "run_actions", "signals", "waits",
               "runs")

_RESULTS_INSERT = (
    "INSERT INTO results(run_id, task, kind, value, note, cache_hit, t)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[],"
    " %b::integer[], %b::double precision[])"
    " ON CONFLICT (run_id, task) DO UPDATE SET kind = excluded.kind, value = excluded.value,"
    " note = excluded.note, cache_hit = excluded.cache_hit, t = excluded.t"
)


def _bytes(data: Any) -> bytes | None:
    """Stored values are bytes (BYTEA): JSON text as UTF-8."""
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return bytes(data)


class SafePostgresStore(SafeRecorder, PostgresStore):
    """``durability = "safe"``: a result is committed before its task completes."""


def create_postgres_store(durability: str = "fast", **options: Any) -> PostgresStore:
    """The registry's factory: the ``safe`` variant commits each result before completion."""
    cls = SafePostgresStore if durability == "safe" else PostgresStore
    return cls(durability=durability, **options)


# The factory takes exactly the store's own options: say so to introspection (the generated
# configuration reference lists a component's options from its signature).
create_postgres_store.__signature__ = inspect.signature(PostgresStore)  # type: ignore[attr-defined]


def _close_at_exit(ref: weakref.ReferenceType[PostgresStore]) -> None:
    store = ref()
    if store is not None:
        try:
            store.close()
        except Exception as exc:
            log.error("store %s: closing at exit failed: %s", store.path, exc)
