"""The ``sqlite`` store: run history, results and the result cache in one SQLite file.

The engine calls the store directly (:mod:`taskloom.kernel.store`); recording a state change
only adds its fields to a flat in-memory queue (no object per record, so nothing for the
garbage collector to visit), and a background writer thread turns the queues into one
transaction per round, at least every ``flush_interval`` seconds and every
``BUSY_INTERVAL`` (20 ms) while records keep coming, so a run's end has little left to wait
for. Nothing touches the disk under the engine's lock, and the writer's share of the
interpreter is kept small (columns taken from the queues by slices, an event batch encoded
in C loops, results without a value written without encoding).

Durability (``durability``):

* ``"fast"`` (default): WAL with ``synchronous=NORMAL``. If the process is killed, the
  records of the last ``flush_interval`` seconds that were still queued are lost: those
  tasks have no stored result and run again on resume. A power failure can also lose the
  last commits before a checkpoint. The database itself stays consistent. The end of a run
  waits for its records to be committed; a write that failed (a full disk, an I/O error, a
  lock held too long) and could not be made good by then fails the run, naming the cause.
* ``"safe"``: WAL with ``synchronous=FULL``, and every successful attempt's result is
  committed before its task is marked completed (and its dependents start). A killed
  process loses only attempts that were running; nothing a dependent has seen is lost. A
  commit that fails fails the run at once: that task is not completed, nothing new starts,
  and a resume runs exactly the tasks whose results are not recorded. Group commit: every
  result waiting for a commit is written by the same round, so the fsync of a round is
  shared by all the workers that finished meanwhile and its cost per task falls as
  concurrency rises.

Records that could not be written are kept and written with the next round that succeeds;
they are never dropped silently.

A locked database (another process in a long write) is waited for ``lock_timeout`` seconds,
then :class:`StoreLockedError` names the processes that have it open. A write still running
after ``slow_write`` seconds is logged while it runs. ``read_only`` opens the file for
history only: nothing is written (not even the list of processes that have it open), no
pickle is loaded, and a reader never waits for a writer (WAL lets it read the last commit).
A new database file is readable and writable by its owner only.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import itertools
import json
import logging
import os
import random
import socket
import sqlite3
import sys
import threading
import time
import traceback
import urllib.parse
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from taskloom.api.params import from_recorded as params_from_recorded
from taskloom.api.params import recorded as recorded_params
from taskloom_std.stores import signals as sigstore
from taskloom_std.stores.claims import Busy, check_options, claim_loop, owner_label
from taskloom_std.stores.codec import RESULT_LIMIT, Signer, UntrustedPickle, decode, encode
from taskloom_std.stores.errors import (
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    StoreVersionError,
)
from taskloom_std.stores.history import RunHistory
from taskloom_std.stores.recording import (
    EVENT_FIELDS,
    RESULT_FIELDS,
    FlatRecorder,
    SafeFlatRecorder,
)
from taskloom_std.stores.schema import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    dump_event_columns,
    migrate,
    read_version,
)

log = logging.getLogger("taskloom.store")

DEFAULT_PATH = Path(".taskloom") / "taskloom.db"
_HEADER = b"SQLite format 3\x00"
_CACHE_IN_MEMORY = 1000
#: How long a read-only reader waits for a lock: only a checkpoint or recovery holds one.
_READ_TIMEOUT = 2.0
#: How often a process with runs in progress looks for cancel requests (seconds).
CANCEL_POLL = 0.5
Outcome = tuple[str, bool, Any, "str | None", "str | None"]


_ROWS_PER_INSERT = 256
#: Seconds between writer rounds while records are queued (at most ``flush_interval``).
BUSY_INTERVAL = 0.02

# Databases this process has open, with how many stores. Closing any file descriptor of a
# database drops every POSIX lock this process holds on it, including the SQLite
# connections' (another process would then think no one has it open, delete the WAL, and
# leave those connections reading a stale or "malformed" database). So the header is read
# with a plain open() only while no store here has the database open.
_OPEN_HERE: dict[str, int] = {}
_OPEN_HERE_LOCK = threading.Lock()

# The run claims this process holds, by (database, run id): a row naming this pid that is
# not here was left by a release that could not write (a locked database), and is stale.
_CLAIMED_HERE: set[tuple[str, str]] = set()


def _opened_here(path: Path) -> None:
    with _OPEN_HERE_LOCK:
        key = str(path.resolve())
        _OPEN_HERE[key] = _OPEN_HERE.get(key, 0) + 1


def _closed_here(path: Path) -> None:
    with _OPEN_HERE_LOCK:
        key = str(path.resolve())
        _OPEN_HERE[key] -= 1
        if not _OPEN_HERE[key]:
            del _OPEN_HERE[key]


@functools.lru_cache(maxsize=8)
def _results_insert(rows: int) -> str:
    return (
        "INSERT OR REPLACE INTO results(run_id, task, kind, value, note, cache_hit, t) VALUES "
        + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    )


@functools.lru_cache(maxsize=8)
def _none_results_insert(rows: int) -> str:
    """Results of no value and no cache hit: three parameters a row."""
    return (
        "INSERT OR REPLACE INTO results(run_id, task, kind, cache_hit, t) VALUES "
        + ",".join(["(?, ?, 'none', 0, ?)"] * rows)
    )


#: Fields per record in each flat queue (the others hold a tuple per record).
_FIELDS = {"events": EVENT_FIELDS, "results": RESULT_FIELDS}
#: Records committed between two checkpoints of the write-ahead log (about SQLite's own
#: 1,000 pages of a run of no-op tasks).
CHECKPOINT_RECORDS = 50_000


def pending_records(batches: list[tuple[str, list[Any]]]) -> int:
    """How many records a writer round's batches hold."""
    return sum(len(rows) // _FIELDS.get(kind, 1) for kind, rows in batches)


def _is_locked(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only (if it is not there)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _read_only_copy(path: Path) -> bool:
    """Whether neither the file nor its folder carries any write permission."""
    try:
        return not (path.stat().st_mode & 0o222 or path.parent.stat().st_mode & 0o222)
    except OSError:
        return False


class SqliteStore(FlatRecorder, RunHistory):
    """Records runs in a SQLite database (see the module docstring for durability)."""

    store_name = "sqlite"

    name = "sqlite"

    @property
    def location(self) -> str:
        """Where the runs are kept (the CLI's history shows it)."""
        return str(self.path)

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        durability: str = "fast",
        flush_interval: float = 0.2,
        lock_timeout: float = 10.0,
        result_limit: int = RESULT_LIMIT,
        config_path: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        slow_write: float = 5.0,
        overrides: Mapping[str, Any] | None = None,
        claim_lease: float = 30.0,
    ) -> None:
        if durability not in ("fast", "safe"):
            raise StoreError(
                f"store 'sqlite': durability must be 'fast' or 'safe', got {durability!r}"
            )
        for key, value in (("flush_interval", flush_interval), ("lock_timeout", lock_timeout),
                           ("slow_write", slow_write), ("claim_lease", claim_lease)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 < value < float("inf")
            ):
                raise StoreError(
                    f"store 'sqlite': {key} must be a positive number of seconds, got {value!r}"
                )
        self.path = Path(path)
        self.durability = durability
        self.flush_interval = float(flush_interval)
        self.lock_timeout = float(lock_timeout)
        self.result_limit = int(result_limit)
        self.slow_write = float(slow_write)
        self.claim_lease = float(claim_lease)
        self.overrides = dict(overrides or {})
        self.read_only = bool(read_only)
        self.config_path = None if config_path is None else str(Path(config_path).resolve())
        self.signer = Signer()
        self._signal_listeners = sigstore.Listeners()
        self._host = socket.gethostname()
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._schedule: Any = None
        self._closed = False
        self._failure: BaseException | None = None
        if self.read_only:
            self._reader = self._open_read_only()
            return
        self._conn = self._open()
        self._register_owner()
        # The writer checkpoints after a round's waiters are released (_checkpoint), not
        # inside the COMMIT that crosses SQLite's threshold, where the end of a run waited
        # for the checkpoint's writes and fsyncs.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._unchecked = 0  # records committed since the last checkpoint
        # Flat queues (FlatRecorder): a state change or a result is a run of fields.
        self._events: list[Any] = []
        self._results: list[Any] = []
        self._errors: deque[tuple[Any, ...]] = deque()
        self._ops: deque[tuple[Any, ...]] = deque()
        self._events_extend = self._events.extend
        self._results_extend = self._results.extend
        self._errors_append = self._errors.append
        self._retry: list[tuple[str, list[tuple[Any, ...]]]] = []
        self._cache_mem: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._round_started = 0
        self._round_done = 0
        self._round_ok = 0  # the last round that left nothing unwritten
        self._closing = False
        # The watchdog: the writer marks each write's start; one thread logs a slow one.
        self._watch = threading.Condition()
        self._writing_since: float | None = None
        self._write_number = 0
        self._active: dict[str, Any] = {}  # runs in progress here, by id: cancel requests
        self._claims: dict[str, int] = {}  # run ids claimed here: the claiming thread
        self._unreleased: set[str] = set()  # released, but the row could not be deleted yet
        self._claim_lock = threading.Lock()
        self._claim_conn: sqlite3.Connection | None = None
        self._db_key = str(self.path.resolve())
        self._next_heartbeat = 0.0
        self._next_cancel_poll = 0.0
        self._writer = threading.Thread(target=self._write_loop, name="taskloom-store", daemon=True)
        self._writer.start()
        self._watchdog = threading.Thread(
            target=self._watch_loop, name="taskloom-store-watchdog", daemon=True
        )
        self._watchdog.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def settings(self) -> dict[str, Any]:
        """How this store records (the options besides where): a run records them so that
        its resume records the same way."""
        return {"durability": self.durability, "flush_interval": self.flush_interval,
                "lock_timeout": self.lock_timeout, "result_limit": self.result_limit,
                "slow_write": self.slow_write, "claim_lease": self.claim_lease}

    # -- opening -----------------------------------------------------------------------------
    def _connect(self, timeout: float | None = None) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.lock_timeout if timeout is None else timeout,
            isolation_level=None, check_same_thread=False,
        )
        return conn

    def _check_header(self) -> bool:
        """Whether the file exists with content; refuse one that is not SQLite."""
        path = self.path
        with _OPEN_HERE_LOCK:
            already_open = _OPEN_HERE.get(str(path.resolve()), 0) > 0
        try:
            if not path.exists() or path.stat().st_size == 0:
                return False
            if already_open:
                # Reading the header through a file object of our own would drop this
                # process's SQLite locks on the file when it is closed (POSIX locks are per
                # process): another process could then delete the WAL a store here uses.
                return True
            with open(path, "rb") as f:
                head = f.read(len(_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        if head != _HEADER:
            raise StoreCorruptError(
                f"{path} is not an SQLite database (corrupt or another kind of file); "
                "it was left untouched. Move it away or choose another database path."
            )
        return True

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if not self._check_header():
            try:
                _create_private(path)
            except OSError as exc:
                raise StoreError(f"cannot create the database {path}: {exc}") from exc
        conn = self._connect()
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.005
        while True:
            try:
                self._prepare(conn)
                _opened_here(path)
                return conn
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if _is_locked(exc) and time.monotonic() < deadline:
                    # Two processes creating one database can deadlock on the journal-mode
                    # switch; SQLite then refuses one at once rather than waiting: try again.
                    time.sleep(pause * (0.5 + random.random()))
                    pause = min(pause * 2, 0.2)
                    continue
                conn.close()
                if _is_locked(exc):
                    raise StoreLockedError(self._locked_message()) from exc
                raise StoreCorruptError(
                    f"{path} cannot be used as a taskloom database ({exc}); it was left "
                    "untouched"
                ) from exc
            except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                conn.close()
                raise StoreCorruptError(
                    f"{path} is not a readable taskloom database ({exc}); it was left "
                    "untouched. Move it away or choose another database path."
                ) from exc
            except BaseException:
                conn.close()
                raise

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check the file, switch to WAL and bring the schema up to date (idempotent)."""
        version = self._check(conn)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("store %s: journal mode is %s, not wal", self.path, mode)
        sync = "FULL" if self.durability == "safe" else "NORMAL"
        conn.execute(f"PRAGMA synchronous={sync}")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            # Another process may have migrated while this one waited for the lock.
            version = self._check(conn)
            migrate(conn, version)
            conn.execute("COMMIT")

    def _open_read_only(self) -> sqlite3.Connection:
        path = self.path
        if not path.is_file():
            raise StoreError(f"no database at {path}")
        self._check_header()
        where = urllib.parse.quote(str(path.resolve()))
        # A read-only copy (no write permission on the file or its folder): SQLite could not
        # make the WAL index beside it, and nobody is meant to write it, so it is read as
        # immutable, creating nothing.
        frozen = _read_only_copy(path)
        conn: sqlite3.Connection | None = None
        try:
            try:
                conn = sqlite3.connect(
                    f"file:{where}?mode=ro" + ("&immutable=1" if frozen else ""), uri=True,
                    timeout=_READ_TIMEOUT, check_same_thread=False,
                )
                version = self._check(conn)
            except sqlite3.OperationalError:
                if conn is not None:
                    conn.close()
                    conn = None
                if frozen or os.access(path.parent, os.W_OK):
                    raise
                conn = sqlite3.connect(f"file:{where}?mode=ro&immutable=1", uri=True,
                                       timeout=_READ_TIMEOUT, check_same_thread=False)
                version = self._check(conn)
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            if _is_locked(exc):
                raise StoreLockedError(
                    f"database {path} is locked: could not read it within {_READ_TIMEOUT:g}s"
                ) from exc
            raise StoreError(f"cannot read the database {path}: {exc}") from exc
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            if conn is not None:
                conn.close()
            raise StoreCorruptError(
                f"{path} is not a readable taskloom database ({exc}); it was left untouched"
            ) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if version < SCHEMA_VERSION:
            conn.close()
            raise StoreVersionError(
                f"{path} has schema version {version}, written by an older taskloom; history "
                f"is read without writing: upgrade it with 'taskloom db upgrade --db {path}' "
                "(or one 'taskloom run' or 'taskloom resume' on it)"
            )
        _opened_here(path)
        return conn

    def _check(self, conn: sqlite3.Connection) -> int:
        version, app, tables = read_version(conn)
        if app != APPLICATION_ID and (app != 0 or tables > 0):
            raise StoreCorruptError(
                f"{self.path} is an SQLite database but not a taskloom one; it was left "
                "untouched. Choose another database path."
            )
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{self.path} has schema version {version}, written by a newer taskloom; "
                f"this version reads up to {SCHEMA_VERSION}. Upgrade taskloom or use another "
                "database; the file was left untouched."
            )
        return version

    def _register_owner(self) -> None:
        command = " ".join(sys.argv)[:500] or sys.executable
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO owners(pid, host, command, since) VALUES (?, ?, ?, ?)",
                (os.getpid(), self._host, command, time.time()),
            )
        except sqlite3.Error as exc:
            self._conn.close()
            if _is_locked(exc):
                raise StoreLockedError(self._locked_message()) from exc
            raise StoreError(f"cannot write to the database {self.path}: {exc}") from exc

    def _locked_message(self) -> str:
        holders = self.holders()
        who = "; ".join(holders) if holders else "no other process found with it open"
        return (
            f"database {self.path} is locked: waited {self.lock_timeout:g}s for another "
            f"process to finish writing. Held open by: {who}"
        )

    def holders(self) -> list[str]:
        """Other processes that have the database open: from the ``owners`` rows and the OS."""
        me = os.getpid()
        found: dict[int, str] = {}
        try:
            where = urllib.parse.quote(str(self.path.resolve()))
            conn = sqlite3.connect(f"file:{where}?mode=ro", uri=True, timeout=0.05)
            try:
                rows = conn.execute("SELECT pid, host, command, since FROM owners").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            rows = []
        import psutil

        for pid, host, command, since in rows:
            with contextlib.suppress(TypeError, ValueError, OverflowError, OSError):
                if pid != me and host == self._host and psutil.pid_exists(pid):
                    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
                    found[pid] = f"pid {pid} ({command}, since {started})"
        target = str(self.path.resolve())
        names = {target, target + "-wal", target + "-journal"}
        for proc in psutil.process_iter(["pid", "name"]):
            pid = proc.info["pid"]
            if pid == me or pid in found:
                continue
            try:
                if any(f.path in names for f in proc.open_files()):
                    found[pid] = f"pid {pid} ({proc.info['name']})"
            except (psutil.Error, OSError):
                continue
        return list(found.values())

    # -- recording (called by the engine; cheap: append to a queue) ------------------------------
    def record_run_start(self, run: Any) -> None:
        self._writable()
        # The writer reads the definitions for the run's fingerprint, off the run's path.
        tasks = list(run.tasks.values()) if self.config_path is None else []
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

    # -- writing ------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            # While records keep coming, commit them as they come (a round every
            # BUSY_INTERVAL): the end of a run then waits for little.
            busy = self._events or self._results
            self._wake.wait(BUSY_INTERVAL if busy else self.flush_interval)
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
            with self._cond:
                self._round_done = number
                if ok:
                    self._round_ok = number
                self._cond.notify_all()
            # What follows is no part of the round: nobody waiting for it waits for these.
            if self._unchecked >= CHECKPOINT_RECORDS and not closing:
                self._checkpoint()
            if self._active and not closing:
                self._poll_cancels()
            if (self._claims or self._unreleased) and not closing:
                self._heartbeat()
            if closing:
                with self._watch:
                    self._write_number = -1
                    self._watch.notify_all()
                return

    def _checkpoint(self) -> None:
        """Copy the committed pages of the write-ahead log into the database (``PASSIVE``:
        never waiting for readers or writers; what it cannot copy now is copied next time)."""
        self._unchecked = 0
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # a busy database: tried again after the next rounds
            log.debug("store %s: checkpoint failed: %s", self.path, exc)

    def _watch_loop(self) -> None:
        """Log a write that has run for longer than ``slow_write`` seconds, while it runs."""
        limit = self.slow_write
        with self._watch:
            while self._write_number >= 0:
                since, number = self._writing_since, self._write_number
                if since is None:
                    self._watch.wait()
                    continue
                left = since + limit - time.monotonic()
                if left > 0:
                    self._watch.wait(left)
                    continue
                log.warning(
                    "store 'sqlite': a write to %s has been running for %.1fs (slow_write is "
                    "%gs); another process may hold the database's lock, or the disk is slow",
                    self.path, time.monotonic() - since, limit,
                )
                while self._write_number == number and self._writing_since is not None:
                    self._watch.wait()

    def _write_round(self) -> None:
        while True:
            batches = self._retry or [
                ("events", self._take(self._events, EVENT_FIELDS)),
                ("errors", self._drain(self._errors)),
                ("results", self._take(self._results, RESULT_FIELDS)),
                ("ops", self._drain(self._ops)),
            ]
            if not any(rows for _, rows in batches):
                return
            # Kept until committed: a failed round is written again by the next one.
            self._retry = batches
            try:
                self._commit(batches)
            except sqlite3.Error as exc:
                pending = pending_records(batches)
                if _is_locked(exc):
                    raise StoreLockedError(
                        f"store 'sqlite': {pending} records not written: "
                        + self._locked_message()
                    ) from exc
                raise StoreError(
                    f"store 'sqlite': cannot write to {self.path}: {exc} "
                    f"({type(exc).__name__}; {pending} records not written yet)"
                ) from exc
            self._retry = []
            self._unchecked += pending_records(batches)
            if self._failure is not None:
                log.warning("store 'sqlite': writing to %s works again; nothing was lost",
                            self.path)
                self._failure = None

    def _commit(self, batches: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        conn = self._conn
        with self._watch:
            self._write_number += 1
            self._writing_since = time.monotonic()
            self._watch.notify_all()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for kind, rows in batches:
                    if rows:
                        getattr(self, "_write_" + kind)(conn, rows)
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (a full disk) may already have rolled back: a ROLLBACK
                # then fails too and would hide the real cause.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        finally:
            with self._watch:
                self._writing_since = None
                self._watch.notify_all()

    @staticmethod
    def _write_events(conn: sqlite3.Connection, rows: list[Any]) -> None:
        """One stored batch per run from a flat queue of changes (columns by slices)."""
        step = EVENT_FIELDS
        runs = rows[0::step]
        out = []
        start = 0
        for run_id, group in itertools.groupby(runs):
            end = start + len(list(group))
            lo, hi = start * step, end * step
            out.append((run_id, rows[lo + 3], dump_event_columns(
                rows[lo + 1:hi:step], rows[lo + 2:hi:step], rows[lo + 3:hi:step])))
            start = end
        conn.executemany("INSERT INTO events(run_id, t, data) VALUES (?, ?, ?)", out)

    @staticmethod
    def _write_errors(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        out = []
        for run_id, task, state, t, attempt, etype, message, tb, exc in rows:
            if tb is None and exc is not None and exc.__traceback__ is not None:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            out.append((run_id, task, state, t, attempt, etype, message, tb))
        conn.executemany(
            "INSERT INTO errors(run_id, task, state, t, attempt, error_type, message, traceback)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            out,
        )

    def _write_results(self, conn: sqlite3.Connection, rows: list[Any]) -> None:
        """Results from a flat queue of ``run id, task, value, time, cache hit`` records."""
        step = RESULT_FIELDS
        values = rows[2::step]
        hits = rows[4::step]
        if values.count(None) == len(values) and hits.count(False) == len(hits):
            # No body returned anything (and no cache hit): nothing to encode, and the
            # parameters are the queue's own columns, interleaved by slice assignments.
            flat: list[Any] = [None] * (3 * len(values))
            flat[0::3], flat[1::3], flat[2::3] = rows[0::step], rows[1::step], rows[3::step]
            width, insert = 3, _none_results_insert
        else:
            limit, signer = self.result_limit, self.signer
            flat = []
            add = flat.extend
            for i in range(0, len(rows), step):
                run_id, task, value, t, hit = rows[i:i + step]
                if value is None:
                    add((run_id, task, "none", None, None, 1 if hit else 0, t))
                    continue
                kind, data, note = encode(value, limit, signer)
                add((run_id, task, kind, data, note, 1 if hit else 0, t))
            width, insert = 7, _results_insert
        # Many rows per statement: each statement step releases and retakes the GIL, which
        # the worker threads would otherwise feel once per row.
        chunk_size = _ROWS_PER_INSERT * width
        for i in range(0, len(flat), chunk_size):
            chunk = flat[i:i + chunk_size]
            conn.execute(insert(len(chunk) // width), chunk)

    def _write_ops(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        for op in rows:
            kind = op[0]
            if kind == "run_start":
                _, run_id, workflow, t, tasks, trigger, parent, overrides = op
                conn.execute(
                    "INSERT INTO runs(id, workflow, config_hash, config_path, status, started,"
                    " pid, host, trigger, parent_id, overrides)"
                    " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET status = 'running', finished = NULL,"
                    " resumes = runs.resumes + 1, pid = excluded.pid, host = excluded.host,"
                    " workflow = coalesce(excluded.workflow, runs.workflow),"
                    " config_path = coalesce(excluded.config_path, runs.config_path),"
                    " trigger = coalesce(excluded.trigger, runs.trigger),"
                    " parent_id = coalesce(excluded.parent_id, runs.parent_id),"
                    " overrides = coalesce(excluded.overrides, runs.overrides)",
                    (run_id, workflow, self._tasks_hash(tasks),
                     self.config_path, t,
                     os.getpid(), self._host, trigger, parent, overrides),
                )
            elif kind == "run_finish":
                _, run_id, status, t, duration, counts, reason = op
                conn.execute(
                    "UPDATE runs SET status = ?, finished = ?, counts = ?,"
                    " duration = coalesce(duration, 0) + ? WHERE id = ?",
                    (status, t, counts, duration, run_id),
                )
                if status == "interrupted":  # stopped while a step waits: resume goes on
                    conn.execute(
                        "UPDATE runs SET status = 'waiting' WHERE id = ? AND EXISTS"
                        " (SELECT 1 FROM waits WHERE run_id = ? AND ended IS NULL)",
                        (run_id, run_id),
                    )
                if reason:  # why it was interrupted: the history shows it with the status
                    conn.execute(
                        "INSERT INTO run_actions(run_id, action, requested_by, requested,"
                        " handled) VALUES (?, 'interrupt', ?, ?, ?)",
                        (run_id, str(reason), t, t),
                    )
            elif kind == "logs":
                _, run_id, task, attempt, t, text = op
                conn.execute(
                    "INSERT OR REPLACE INTO logs(run_id, task, attempt, t, text)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (run_id, task, attempt, t, text),
                )
            elif kind == "cache_put":
                _, key, task, value, created, expires = op
                ckind, data, note = encode(value, self.result_limit, self.signer)
                if ckind == "missing":
                    log.info("cache: %s not cached: %s", task, note)
                    continue
                conn.execute(
                    "INSERT OR REPLACE INTO cache(key, task, kind, value, created, expires)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key, task, ckind, data, created, expires),
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
            # Rounds run one after another: once a round at or after ``target`` has written
            # everything it found, what was queued before this call is committed.
            written = self._round_ok >= target
        failure = self._failure
        if not written and failure is not None:
            raise failure

    def close(self) -> None:
        """Commit what is queued, stop the writer, and release the database."""
        if self._closed:
            return
        self._closed = True
        if self.read_only:
            if self._reader is not None:
                self._reader.close()
                _closed_here(self.path)
            return
        with self._cond:
            self._closing = True
        self._wake.set()
        self._writer.join()
        self._watchdog.join()
        self._release_all()
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute(
                "DELETE FROM owners WHERE pid = ? AND host = ?", (os.getpid(), self._host)
            )
        self._conn.close()
        _closed_here(self.path)
        if self._reader is not None:
            self._reader.close()
        if self._schedule is not None:
            self._schedule.close()
        if self._failure is not None and self._retry:
            failure, self._failure = self._failure, None
            raise failure

    # -- reading -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection that sees everything committed (queued records are flushed first)."""
        if not self._closed and not self.read_only:
            with contextlib.suppress(StoreError):  # history still reads what was committed
                self.flush()
        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect()
            try:
                yield self._reader
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    raise StoreLockedError(self._locked_message()) from exc
                raise self.damaged("a query", exc) from exc
            except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                raise self.damaged("a query", exc) from exc

    def outcomes(self, run_id: str) -> dict[str, Outcome]:
        """Each recorded task's last state: ``(state, result stored, result, error, type)``.

        A task counts as completed only when its result is stored. A read-only store shows
        pickled results as a placeholder; a writing one loads only pickles it can verify.
        """
        with self.read() as conn:
            states: dict[str, str] = {}
            for _, task, state, _ in self.events(conn, run_id):
                states[task] = state
            errors: dict[str, tuple[str | None, str | None]] = {}
            for task, etype, message in conn.execute(
                "SELECT task, error_type, message FROM errors WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ):
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
                result = decode(kind, value, self.signer, load_pickles=not self.read_only)
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

    # -- run claims (kernel/store.py, taskloom_std.stores.claims) --------------------------------
    def vacuum(self) -> tuple[int, int]:
        """Give the pages freed by deleted runs back to the file system (``taskloom prune``):
        ``VACUUM``, then a checkpoint that truncates the write-ahead log. Returns the bytes
        of the database file and its log before and after.

        ``VACUUM`` rewrites the whole file and needs every other connection to be done
        writing: it waits ``lock_timeout`` seconds, then raises :class:`StoreLockedError`
        naming the processes holding the database (nothing is lost; the pages stay free
        for later runs).
        """
        if self.read_only:
            raise StoreError(f"store 'sqlite': {self.path} is open read-only")
        self.flush()
        before = self._footprint()
        conn = self._connect()
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                raise StoreLockedError(f"not vacuumed: {self._locked_message()}") from exc
            raise StoreError(f"store 'sqlite': cannot vacuum {self.path}: {exc}") from exc
        finally:
            conn.close()
        return before, self._footprint()

    def _footprint(self) -> int:
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def claim_run(self, run_id: str, workflow: str | None, *, on_conflict: str = "wait",
                  max_active_runs: int | None = None, on_limit: str = "wait") -> Any:
        """Claim ``run_id`` in the database for this thread; returns the release.

        One transaction (``BEGIN IMMEDIATE``) drops the claims of dead holders (a pid gone
        on this host, or no heartbeat for ``claim_lease`` seconds), then grants the claim
        unless the id is held or ``workflow`` has ``max_active_runs`` claims. The writer
        thread renews this process's heartbeats every third of the lease.
        """
        self._writable()
        check_options(on_conflict, on_limit, max_active_runs)
        me = threading.get_ident()
        if self._claims.get(run_id) == me:
            return _nothing  # this thread holds it already (run() resuming)

        def attempt() -> Busy | None:
            busy = self._claim_once(run_id, workflow, max_active_runs)
            if busy is None:
                self._claims[run_id] = me
                _CLAIMED_HERE.add((self._db_key, run_id))
            elif busy.kind == "conflict" and self._claims.get(run_id) is not None:
                return Busy("conflict", (f"{owner_label()} (another thread)",))
            return busy

        claim_loop(attempt, run_id, workflow, on_conflict=on_conflict, on_limit=on_limit,
                   max_active_runs=max_active_runs)

        def release() -> None:
            self._claims.pop(run_id, None)
            _CLAIMED_HERE.discard((self._db_key, run_id))
            self._unreleased.add(run_id)
            self._delete_released()

        return release

    def _delete_released(self) -> None:
        """Delete the rows of released claims; those that cannot be (a locked database) are
        tried again at the next heartbeat, and meanwhile count as stale."""
        for run_id in list(self._unreleased):
            try:
                with self._claiming() as conn:
                    conn.execute(
                        "DELETE FROM run_claims WHERE run_id = ? AND pid = ? AND host = ?",
                        (run_id, os.getpid(), self._host),
                    )
            except (sqlite3.Error, StoreError) as exc:
                log.debug("store %s: releasing run %s: %s", self.path, run_id, exc)
                return
            self._unreleased.discard(run_id)

    @contextlib.contextmanager
    def _claiming(self) -> Iterator[sqlite3.Connection]:
        """The claims' own connection: the writer's is busy with its rounds."""
        with self._claim_lock:
            if self._claim_conn is None:
                conn = self._connect()
                # No fsync per claim: a claim lost with the machine is held by no live
                # process, and is taken over like any stale one.
                conn.execute("PRAGMA synchronous=NORMAL")
                self._claim_conn = conn
            try:
                yield self._claim_conn
            except sqlite3.OperationalError as exc:
                if _is_locked(exc):
                    raise StoreLockedError(self._locked_message()) from exc
                raise

    def _claim_once(self, run_id: str, workflow: str | None,
                    max_active_runs: int | None) -> Busy | None:
        import psutil

        with self._claiming() as conn:
            conn.execute("BEGIN IMMEDIATE")
            inserted = False
            try:
                now = time.time()
                rows = conn.execute(
                    "SELECT run_id, workflow, pid, host, heartbeat FROM run_claims"
                ).fetchall()
                live = []
                for row in rows:
                    _, _, pid, host, beat = row
                    if host != self._host:
                        gone = False
                    elif pid == os.getpid():
                        gone = (self._db_key, row[0]) not in _CLAIMED_HERE
                    else:
                        gone = not psutil.pid_exists(pid)
                    if gone or beat < now - self.claim_lease:
                        log.warning("run %s: taking over the claim of process %s@%s (%s)",
                                    row[0], pid, host,
                                    "gone" if gone else "no heartbeat within the lease")
                        conn.execute("DELETE FROM run_claims WHERE run_id = ?", (row[0],))
                    else:
                        live.append(row)
                held = [r for r in live if r[0] == run_id]
                busy: Busy | None = None
                if held:
                    busy = Busy("conflict", (owner_label(held[0][2], held[0][3]),))
                elif max_active_runs is not None:
                    same = [r for r in live if r[1] == workflow]
                    if len(same) >= max_active_runs:
                        busy = Busy("limit", tuple(
                            f"{owner_label(r[2], r[3])} (run {r[0]})" for r in same))
                if busy is None:
                    conn.execute(
                        "INSERT INTO run_claims(run_id, workflow, pid, host, claimed, heartbeat)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (run_id, workflow, os.getpid(), self._host, now, now),
                    )
                    # Known here before it is visible: another store object of this process
                    # (its own claim lock) must not take the new row for a dead holder's.
                    _CLAIMED_HERE.add((self._db_key, run_id))
                    inserted = True
                conn.execute("COMMIT")
            except BaseException:
                if inserted:
                    _CLAIMED_HERE.discard((self._db_key, run_id))
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        return busy

    def _heartbeat(self) -> None:
        """In the writer thread: tell other processes this one still runs its claims."""
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.claim_lease / 3
        self._delete_released()
        held = list(self._claims)
        if not held:
            return
        try:
            with self._claiming() as conn:
                conn.execute(
                    "UPDATE run_claims SET heartbeat = ? WHERE pid = ? AND host = ?"
                    f" AND run_id IN ({','.join('?' * len(held))})",
                    [time.time(), os.getpid(), self._host, *held],
                )
        except (sqlite3.Error, StoreError) as exc:  # tried again at the next beat
            log.debug("store %s: heartbeat failed: %s", self.path, exc)

    def _release_all(self) -> None:
        if self._claim_conn is None:
            return
        for run_id in list(self._claims):
            _CLAIMED_HERE.discard((self._db_key, run_id))
        self._unreleased.update(self._claims)
        self._claims.clear()
        self._delete_released()
        self._claim_conn.close()
        self._claim_conn = None

    def recorded_overrides(self, run_id: str) -> dict[str, Any]:
        """The ``--set`` and ``TASKLOOM_*`` overrides run ``run_id`` was started with."""
        try:
            with self.read() as conn:
                row = conn.execute("SELECT overrides FROM runs WHERE id = ?", (run_id,)).fetchone()
        except StoreError:  # a database older than the column: nothing was recorded
            return {}
        found = json.loads(row[0]) if row and row[0] else {}
        return dict(found) if isinstance(found, dict) else {}

    # -- signals and waits (taskloom_std.stores.signals) -------------------------------------
    def send_signal(self, run_id: str, name: str, payload: Any = None,
                    sent_by: str = "api") -> None:
        """Record signal ``name`` for run ``run_id``; ``SignalRefused`` when it cannot be."""
        self._with_conn(sigstore.sqlite_send, run_id, name, payload, sent_by)
        self._signal_listeners.notify(run_id, name)

    def received(self, run_id: str, name: str) -> tuple[bool, Any]:
        found: tuple[bool, Any] = self._with_conn(sigstore.sqlite_received, run_id, name)
        return found

    def open_wait(self, run_id: str, task: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._with_conn(sigstore.sqlite_open_wait, run_id, task)
        return found

    def begin_wait(self, run_id: str, task: str, kind: str, signal: str | None,
                   started: float, due: float | None, schema: Any) -> None:
        self.flush()  # the run's row is written before it is marked waiting
        self._with_conn(sigstore.sqlite_begin_wait, run_id, task, kind, signal, started, due,
                        schema)

    def end_wait(self, run_id: str, task: str) -> None:
        self._with_conn(sigstore.sqlite_end_wait, run_id, task)

    def waits(self, run_id: str) -> list[dict[str, Any]]:
        """The steps of run ``run_id`` waiting now (task, kind, signal, started, due)."""
        found: list[dict[str, Any]] = self._with_conn(sigstore.sqlite_waits, run_id)
        return found

    def signals(self, run_id: str) -> list[dict[str, Any]]:
        """Every signal sent to run ``run_id`` (name, payload, sent, sent_by)."""
        found: list[dict[str, Any]] = self._with_conn(sigstore.sqlite_signals, run_id)
        return found

    def add_signal_listener(self, fn: sigstore.Listener) -> None:
        self._signal_listeners.add(fn)

    def remove_signal_listener(self, fn: sigstore.Listener) -> None:
        self._signal_listeners.remove(fn)

    def _with_conn(self, fn: Any, *args: Any) -> Any:
        conn = self._connect()
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                raise StoreLockedError(self._locked_message()) from exc
            raise StoreError(f"store 'sqlite': {self.path}: {exc}") from exc
        finally:
            conn.close()

    def recorded_params(self, run_id: str) -> dict[str, Any]:
        """The parameter values run ``run_id`` started with (a resume runs with them)."""
        return params_from_recorded(self.recorded_overrides(run_id))

    # -- requests from outside the running process ------------------------------------------------
    def record_action(self, action: str, requested_by: str, *, run_id: str | None = None,
                      workflow: str | None = None, detail: str | None = None) -> int:
        """Record that ``requested_by`` asked for ``action`` (``cancel``, ``retry``, ``start``)
        on a run; returns the request's id. A ``cancel`` is carried out by the process
        running the run, which polls its pending requests every :data:`CANCEL_POLL` seconds."""
        conn = self._connect()
        try:
            cur = conn.execute(
                "INSERT INTO run_actions(run_id, workflow, action, requested_by, requested,"
                " detail) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, workflow, action, requested_by, time.time(), detail),
            )
            return int(cur.lastrowid or 0)
        except sqlite3.OperationalError as exc:
            if _is_locked(exc):
                raise StoreLockedError(self._locked_message()) from exc
            raise
        finally:
            conn.close()

    def _poll_cancels(self) -> None:
        """In the writer thread: cancel the runs in progress here that someone asked to."""
        now = time.monotonic()
        if now < self._next_cancel_poll:
            return
        self._next_cancel_poll = now + CANCEL_POLL
        active = dict(self._active)
        marks = ",".join("?" * len(active))
        try:
            rows = self._conn.execute(
                "SELECT id, run_id, requested_by FROM run_actions WHERE action = 'cancel'"
                f" AND handled IS NULL AND run_id IN ({marks})",
                list(active),
            ).fetchall()
            if rows:
                self._conn.execute(
                    f"UPDATE run_actions SET handled = ? WHERE id IN ({','.join('?' * len(rows))})",
                    [time.time(), *(r[0] for r in rows)],
                )
        except sqlite3.Error as exc:  # a busy database: asked again at the next poll
            log.debug("store %s: polling cancel requests failed: %s", self.path, exc)
            return
        for _, run_id, requested_by in rows:
            log.warning("run %s: cancelled as requested by %s", run_id, requested_by)
            active[run_id].cancel()

    # -- result cache ------------------------------------------------------------------------
    def cache_get(self, key: str, now: float) -> tuple[bool, Any]:
        with self._cache_lock:
            entry = self._cache_mem.get(key)
        if entry is not None:
            if entry[0] > now:
                return True, entry[1]
            return False, None
        with self.read_nowait() as conn:
            row = conn.execute(
                "SELECT kind, value, expires FROM cache WHERE key = ?", (key,)
            ).fetchone()
        if row is None or not isinstance(row[2], (int, float)) or row[2] <= now:
            return False, None
        try:
            value = decode(row[0], row[1], self.signer, load_pickles=not self.read_only)
        except Exception as exc:  # an unverifiable or damaged entry is a miss
            log.warning("store %s: cache entry %s not used: %s", self.path, key, exc)
            return False, None
        self._remember(key, row[2], value)
        return True, value

    def _remember(self, key: str, expires: float, value: Any) -> None:
        """Keep recent entries in memory too: hits then cost no query."""
        with self._cache_lock:
            mem = self._cache_mem
            mem[key] = (expires, value)
            mem.move_to_end(key)
            if len(mem) > _CACHE_IN_MEMORY:
                mem.popitem(last=False)

    @contextlib.contextmanager
    def read_nowait(self) -> Iterator[sqlite3.Connection]:
        """A reading connection without flushing first (the cache keeps its own copy)."""
        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect()
            yield self._reader

    def schedule_state(self) -> Any:
        """The :class:`taskloom.api.scheduling.ScheduleState` on this database (one per store)."""
        from taskloom_std.stores.schedule import SqliteScheduleState

        self._writable()
        with self._read_lock:
            if self._schedule is None:
                self._schedule = SqliteScheduleState(self)
            return self._schedule


class SafeSqliteStore(SafeFlatRecorder, SqliteStore):
    """``durability = "safe"``: a result is committed before its task completes."""


def create_sqlite_store(durability: str = "fast", **options: Any) -> SqliteStore:
    """The registry's factory: the ``safe`` variant commits each result before completion."""
    cls = SafeSqliteStore if durability == "safe" else SqliteStore
    return cls(durability=durability, **options)


# The factory takes exactly the store's own options: say so to introspection (the generated
# configuration reference lists a component's options from its signature).
create_sqlite_store.__signature__ = inspect.signature(SqliteStore)  # type: ignore[attr-defined]


def _close_at_exit(ref: weakref.ReferenceType[SqliteStore]) -> None:
    store = ref()
    if store is not None:
        try:
            store.close()
        except Exception as exc:
            log.error("store %s: closing at exit failed: %s", store.path, exc)


def _nothing() -> None:
    """The release of a claim this thread already held: the outer holder releases it."""
