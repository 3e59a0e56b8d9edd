"""Reading a run's history back: the run list, one run's attempts and its Gantt chart."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Container, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from taskloom_std.stores.errors import StoreCorruptError, StoreError
from taskloom_std.stores.schema import LegacyEvents, load_event_states, load_events

log = logging.getLogger("taskloom.store")

_FINAL = ("completed", "failed", "cancelled", "skipped")
Outcome = tuple[str, bool, Any, "str | None", "str | None"]


# Every query reads all its rows (fetchall, never fetchone): a statement left unfinished keeps
# the connection's read snapshot, and a long-lived reader would never see new commits.


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


@dataclass
class AttemptRecord:
    number: int
    started: float
    finished: float | None
    state: str  # how it ended: completed, failed, retrying, cancelled, or running (interrupted)
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


@dataclass
class TaskRecord:
    name: str
    state: str
    events: list[tuple[str, float]] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    result_kind: str | None = None
    result_note: str | None = None
    cache_hit: bool = False
    error_type: str | None = None
    error: str | None = None


@dataclass
class RunRecord:
    id: str
    workflow: str | None
    status: str
    started: float | None
    finished: float | None
    duration: float | None
    counts: dict[str, int]
    config_path: str | None = None
    config_hash: str | None = None
    resumes: int = 0
    pid: int | None = None
    #: The host of the process that ran it last (with ``pid``: whether it is still going).
    host: str | None = None
    tasks: list[TaskRecord] = field(default_factory=list)
    #: Why an ``interrupted`` run stopped: the signal(s) recorded, or its process is gone.
    reason: str | None = None
    #: What started it last (manual, schedule, resume, api) and the run that started it.
    trigger: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True)
class RunFilters:
    """Which runs a page lists: by workflow, status (``interrupted`` included), start time
    (epoch seconds, ``until`` exclusive) and what started them (``trigger``)."""

    workflow: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    trigger: str | None = None


@dataclass
class RunPage:
    runs: list[RunRecord]
    total: int
    limit: int
    offset: int


class RunHistory:
    """Read side of the SQLite store; the store supplies :meth:`read` and :meth:`outcomes`.

    Damaged records raise :class:`StoreCorruptError` naming the database and the record.
    """

    path: Any = None

    def damaged(self, what: str, exc: BaseException) -> StoreCorruptError:
        return StoreCorruptError(
            f"{self.path} is damaged: {what} cannot be read ({type(exc).__name__}: {exc}); "
            "the file was left untouched"
        )

    def read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise TypeError("RunHistory needs a store that provides read()")

    def outcomes(self, run_id: str) -> dict[str, Outcome]:
        raise TypeError("RunHistory needs a store that provides outcomes()")

    def events(self, conn: sqlite3.Connection, run_id: str,
               only: Container[str] | None = None) -> list[tuple[str, str, str, float]]:
        """Every recorded state change of the run (``only``: of those tasks), in order:
        ``(run id, task, state, time)``."""
        out: list[tuple[str, str, str, float]] = []
        for rowid, data in conn.execute(
            "SELECT rowid, data FROM events WHERE run_id = ? ORDER BY rowid", (run_id,)
        ):
            try:
                out.extend(load_events(run_id, data, only))
            except LegacyEvents:
                # Recorded before schema 3 (pickled): the attempts it held are not shown,
                # and on resume its tasks count by their stored results alone.
                warned: set[str] = self.__dict__.setdefault("_legacy_warned", set())
                if run_id not in warned:
                    warned.add(run_id)
                    log.warning("%s: run %r has state changes recorded by an older taskloom; "
                                "they are not read (they were pickled)", self.path, run_id)
                continue
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                raise self.damaged(f"event batch {rowid} of run {run_id!r}", exc) from exc
        return out

    def logs(
        self, run_id: str, task: str | None = None, attempt: int | None = None,
        after: float | None = None,
    ) -> list[tuple[str, int, float, str]]:
        """Captured output of the run's attempts, in the order they finished:
        ``(task, attempt, time, text)``; ``after`` keeps those recorded later than it."""
        sql = "SELECT task, attempt, t, text FROM logs WHERE run_id = ?"
        params: list[Any] = [run_id]
        if task is not None:
            sql += " AND task = ?"
            params.append(task)
        if attempt is not None:
            sql += " AND attempt = ?"
            params.append(attempt)
        if after is not None:
            sql += " AND t > ?"
            params.append(after)
        with self.read() as conn:
            rows = conn.execute(sql + " ORDER BY t, task, attempt", params).fetchall()
        return [(str(r[0]), int(r[1]), float(r[2]), str(r[3])) for r in rows]

    def _connect(self, timeout: float | None = None) -> sqlite3.Connection:
        raise TypeError("RunHistory needs a store that provides _connect()")

    def _status(self, status: str, pid: int | None, host: str | None) -> str:
        if status == "running" and pid is not None and host == socket.gethostname():
            import psutil

            if pid != os.getpid() and not psutil.pid_exists(pid):
                return "interrupted"
        return status

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs, newest first."""
        with self.read() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started DESC LIMIT ?",
                (limit,),
            ).fetchall()
        out = []
        for row in rows:
            try:
                record = self._record(row)
            except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
                raise self.damaged(f"the record of run {str(row[0])[:40]!r}", exc) from exc
            if not record.counts:
                record.counts = self._counts(record.id)
            out.append(record)
        self._reasons(out)
        return out

    def _reasons(self, records: list[RunRecord]) -> None:
        """Fill in why each recorded ``interrupted`` run stopped (the ``interrupt`` rows its
        process wrote to ``run_actions`` as it closed the run)."""
        ids = [r.id for r in records if r.status == "interrupted" and r.reason is None]
        if not ids:
            return
        found: dict[str, list[str]] = {}
        with self.read() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                for run_id, who in conn.execute(
                    "SELECT run_id, requested_by FROM run_actions WHERE action = 'interrupt'"
                    f" AND run_id IN ({','.join('?' * len(chunk))}) ORDER BY id", chunk,
                ).fetchall():
                    found.setdefault(run_id, []).append(str(who))
        for record in records:
            if record.id in found:
                record.reason = ", ".join(dict.fromkeys(found[record.id]))

    def _record(self, row: tuple[Any, ...]) -> RunRecord:
        (run_id, workflow, status, started, finished, duration, counts, config_path,
         config_hash, resumes, pid, host, trigger, parent_id) = row
        counts = json.loads(counts) if counts else {}
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in counts.items()
        ):
            raise ValueError("task counts are not a table of numbers")
        for number in (started, finished, duration):
            if number is not None and not isinstance(number, (int, float)):
                raise ValueError("a time is not a number")
        if not isinstance(run_id, str) or not isinstance(status, str):
            raise ValueError("the id or status is not text")
        shown = self._status(status, pid, host)
        return RunRecord(
            id=run_id, workflow=workflow, status=shown,
            started=started, finished=finished, duration=duration,
            counts=counts, config_path=config_path,
            config_hash=config_hash, resumes=resumes, pid=pid, host=host,
            reason=f"its process ({pid}) ended before the run did" if shown != status else None,
            trigger=trigger, parent_id=parent_id,
        )

    def _counts(self, run_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state, *_ in self.outcomes(run_id).values():
            counts[state] = counts.get(state, 0) + 1
        return counts

    def run(self, run_id: str) -> RunRecord | None:
        """One run's record without its tasks, or None."""
        with self.read() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",
                (run_id,),
            ).fetchall()  # fetchone() would keep the snapshot of a long-lived reader
        if not rows:
            return None
        try:
            record = self._record(rows[0])
        except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
            raise self.damaged(f"the record of run {run_id!r}", exc) from exc
        self._reasons([record])
        return record

    def find(self, prefix: str) -> list[str]:
        """Run ids starting with ``prefix`` (the CLI accepts unambiguous prefixes)."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [r[0] for r in rows]

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """What :class:`taskloom.RunSummary` holds (without tasks), or None if unknown."""
        record = self.run(run_id)
        if record is None:
            return None
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, (state, stored, result, error, _) in self.outcomes(run_id).items():
            if state == "completed" and stored:
                results[name] = result
            elif error is not None and state in _FINAL:
                errors[name] = error
        return {
            "id": record.id, "name": record.workflow, "status": record.status,
            "counts": record.counts or self._counts(run_id), "results": results,
            "errors": errors, "started_at": _utc(record.started),
            "finished_at": _utc(record.finished), "duration": record.duration or 0.0,
            "trigger": record.trigger, "parent_id": record.parent_id,
        }

    # -- the dashboard's queries: indexed, paginated, never unpickling a result ---------------
    @staticmethod
    def _where(filters: RunFilters) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if filters.workflow:
            clauses.append("workflow = ?")
            args.append(filters.workflow)
        if filters.status:
            # interrupted is recorded (a signal stopped the run) or a running row whose process
            # is gone, decided per row after the query
            if filters.status == "interrupted":
                clauses.append("status IN ('running', 'interrupted')")
            else:
                clauses.append("status = ?")
                args.append(filters.status)
        if filters.trigger:
            clauses.append("trigger = ?")
            args.append(filters.trigger)
        if filters.since is not None:
            clauses.append("started >= ?")
            args.append(filters.since)
        if filters.until is not None:
            clauses.append("started < ?")
            args.append(filters.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def runs_page(self, limit: int = 50, offset: int = 0, *, workflow: str | None = None,
                  status: str | None = None, since: float | None = None,
                  until: float | None = None, trigger: str | None = None) -> RunPage:
        """One page of the run list, newest first, with the number of runs that match
        (see :class:`RunFilters`).

        Runs still going (no final counts yet) get counts from their events, without
        reading any result. ``running`` and ``interrupted`` are one stored status told apart
        per row, so a page filtered by either may hold fewer than ``limit`` runs.
        """
        filters = RunFilters(workflow, status, since, until, trigger)
        where, args = self._where(filters)
        with self.read() as conn:
            total = conn.execute(f"SELECT count(*) FROM runs{where}", args).fetchall()[0][0]
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs{where}"
                " ORDER BY started DESC, id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        records = [self._record(row) for row in rows]
        if filters.status in ("running", "interrupted"):
            records = [r for r in records if r.status == filters.status]
        for record in records:
            if not record.counts:
                record.counts = self.live_counts(record.id)
        self._reasons(records)
        return RunPage(records, total, limit, offset)

    def status_counts(self, *, workflow: str | None = None, since: float | None = None,
                      until: float | None = None, trigger: str | None = None
                      ) -> dict[str, int]:
        """How many runs of ``workflow`` started in ``[since, until)`` (by ``trigger``) are
        in each status."""
        where, args = self._where(RunFilters(workflow, None, since, until, trigger))
        with self.read() as conn:
            counts = dict(conn.execute(
                f"SELECT status, count(*) FROM runs{where} GROUP BY status", args
            ).fetchall())
            running = conn.execute(
                "SELECT status, pid, host FROM runs"
                + (where + " AND" if where else " WHERE") + " status = 'running'", args
            ).fetchall()
        for status, pid, host in running:
            if self._status(status, pid, host) == "interrupted":
                counts["running"] -= 1
                counts["interrupted"] = counts.get("interrupted", 0) + 1
        return {k: v for k, v in counts.items() if v}

    def children(self, run_id: str, limit: int = 200) -> list[RunRecord]:
        """The runs ``run_id`` started (their ``parent_id`` is it), oldest first."""
        with self.read() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE parent_id = ?"
                " ORDER BY started, id LIMIT ?", (run_id, limit),
            ).fetchall()
        records = [self._record(row) for row in rows]
        self._reasons(records)
        return records

    def log_previews(self, run_id: str, tasks: list[str] | None = None,
                     size: int = 4096) -> dict[tuple[str, int], tuple[str, int]]:
        """The start of each attempt's captured output: ``(task, attempt) -> (text, full
        length)``, the text cut at ``size`` characters (the database does the cutting, so
        a page never loads all of a big run's output); only ``tasks`` when given."""
        sql = "SELECT task, attempt, substr(text, 1, ?), length(text) FROM logs WHERE run_id = ?"
        out: dict[tuple[str, int], tuple[str, int]] = {}
        names: list[Any] = [None] if tasks is None else list(dict.fromkeys(tasks))
        with self.read() as conn:
            for i in range(0, len(names), 500):
                chunk = names[i:i + 500]
                args: list[Any] = [size, run_id]
                where = sql
                if tasks is not None:
                    where += f" AND task IN ({','.join('?' * len(chunk))})"
                    args += chunk
                for task, attempt, text, length in conn.execute(where, args).fetchall():
                    out[(str(task), int(attempt))] = (str(text), int(length))
        return out

    def workflows(self) -> list[str]:
        """Every workflow name recorded (the ``runs_workflow_started`` index walks them)."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT workflow FROM runs WHERE workflow IS NOT NULL ORDER BY workflow"
            ).fetchall()
        return [r[0] for r in rows]

    def live_counts(self, run_id: str) -> dict[str, int]:
        """Each task's last recorded state, counted (a stored result counts as completed)."""
        with self.read() as conn:
            states = {task: state for _, task, state, _ in self.events(conn, run_id)}
            for (task,) in conn.execute("SELECT task FROM results WHERE run_id = ?", (run_id,)):
                states[task] = "completed"
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        return counts

    def run_version(self, run_id: str) -> tuple[Any, ...] | None:
        """Changes whenever anything is recorded for the run: a cheap check for live pages."""
        with self.read() as conn:
            row = conn.execute(
                "SELECT status, finished, resumes FROM runs WHERE id = ?", (run_id,)
            ).fetchall()
            if not row:
                return None
            (last,) = conn.execute(
                "SELECT max(rowid) FROM events WHERE run_id = ?", (run_id,)
            ).fetchall()[0]
            (actions,) = conn.execute(
                "SELECT count(*) FROM run_actions WHERE run_id = ?", (run_id,)
            ).fetchall()[0]
        return (*row[0], last, actions)

    def list_version(self) -> tuple[Any, ...]:
        """Changes when a run starts, finishes or records events: for the live run list."""
        with self.read() as conn:
            runs = conn.execute(
                "SELECT count(*), max(started), max(finished) FROM runs"
            ).fetchall()[0]
            (last,) = conn.execute("SELECT max(rowid) FROM events").fetchall()[0]
        return (*runs, last)

    def result_previews(self, run_id: str, size: int = 200) -> dict[str, str]:
        """A short text of each stored result: JSON as stored; anything else is described,
        never unpickled."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT task, kind, CASE WHEN kind = 'json' THEN substr(value, 1, ?) END, note"
                " FROM results WHERE run_id = ?",
                (size + 1, run_id),
            ).fetchall()
        out: dict[str, str] = {}
        for task, kind, text, note in rows:
            if kind == "json":
                out[task] = text if len(text) <= size else text[:size] + "…"
            elif kind == "none":
                out[task] = "None"
            elif kind == "pickle":
                out[task] = f"(not JSON: {note or 'pickled'}; not shown)"
            else:
                out[task] = f"(not stored: {note})" if note else "(not stored)"
        return out

    def result(self, run_id: str, task: str) -> tuple[str, str | None, str | None] | None:
        """A task's whole stored result, never unpickled: ``(kind, JSON text, note)``; the
        text is None unless ``kind`` is ``json`` (``none`` is a None result, ``pickle`` a
        value that is not JSON, ``missing`` one that was not stored). None: no result."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT kind, CASE WHEN kind = 'json' THEN value END, note FROM results"
                " WHERE run_id = ? AND task = ?", (run_id, task),
            ).fetchall()
        if not rows:
            return None
        kind, value, note = rows[0]
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self.damaged(f"the result of task {task!r} in run {run_id!r}",
                                   exc) from exc
        return str(kind), value, note

    #: How runs are ordered, newest first, when choosing what prune keeps (SQL).
    _NEWEST_FIRST = "started DESC, id"

    def prune_candidates(self, older_than: float | None, keep: int | None,
                         now: float | None = None) -> list[str]:
        """The runs :meth:`prune` would delete, oldest first: ended (or started) more than
        ``older_than`` seconds before ``now``, beyond the ``keep`` newest, and neither running
        nor waiting (a waiting run may be resumed when its signal comes)."""
        if older_than is None and keep is None:
            raise ValueError("prune needs older_than, keep or both")
        cutoff = None if older_than is None else (
            (time.time() if now is None else now) - older_than)
        with self.read() as conn:
            rows = conn.execute(
                "SELECT id, status, pid, host, coalesce(finished, started) FROM runs"
                f" ORDER BY {self._NEWEST_FIRST}"
            ).fetchall()
        doomed = []
        for i, (run_id, status, pid, host, when) in enumerate(rows):
            if keep is not None and i < keep:
                continue
            if cutoff is not None and (when is None or when >= cutoff):
                continue
            if self._status(status, pid, host) in ("running", "waiting"):
                continue
            doomed.append(run_id)
        doomed.reverse()
        return doomed

    def prune(self, older_than: float | None = None, keep: int | None = None, *,
              now: float | None = None, dry_run: bool = False) -> list[str]:
        """Delete runs that finished (or started) more than ``older_than`` seconds before
        ``now``, except the ``keep`` newest runs, with everything recorded for them (events,
        errors, results, logs, actions); returns their ids, oldest first. ``keep`` alone
        keeps only the newest ``keep``. A run that is still running is never deleted (one
        whose process is gone counts as interrupted, and may be). ``dry_run``: delete
        nothing, return what would go."""
        doomed = self.prune_candidates(older_than, keep, now)
        if dry_run or not doomed:
            return doomed
        if getattr(self, "read_only", False):
            raise StoreError(f"store 'sqlite': {self.path} is open read-only")
        deleted: list[str] = []
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i in range(0, len(doomed), 500):
                chunk = doomed[i:i + 500]
                # Checked again inside the transaction: a resume may have started one since.
                gone = {run_id for run_id, status, pid, host in conn.execute(
                    "SELECT id, status, pid, host FROM runs"
                    f" WHERE id IN ({','.join('?' * len(chunk))})", chunk,
                ).fetchall() if self._status(status, pid, host) not in ("running", "waiting")}
                chunk = [r for r in chunk if r in gone]
                if not chunk:
                    continue
                marks = ",".join("?" * len(chunk))
                for table in _RUN_TABLES:
                    column = "id" if table == "runs" else "run_id"
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
                deleted.extend(chunk)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"store 'sqlite': cannot delete runs from {self.path}: {exc}"
                             ) from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        return deleted

    def actions(self, run_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """What was asked of a run from outside (cancel, retry, start), newest first; all
        runs' when ``run_id`` is None."""
        sql = ("SELECT id, run_id, workflow, action, requested_by, requested, handled, detail"
               " FROM run_actions")
        args: list[Any] = []
        if run_id is not None:
            sql += " WHERE run_id = ?"
            args.append(run_id)
        with self.read() as conn:
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        keys = ("id", "run_id", "workflow", "action", "requested_by", "requested", "handled",
                "detail")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def task_states(self, run_id: str) -> dict[str, str]:
        """Each task's latest state, in the order the tasks were first recorded: what a
        drawing of the run's graph needs, without reading times or building attempts."""
        states: dict[str, str] = {}
        with self.read() as conn:
            for rowid, data in conn.execute(
                "SELECT rowid, data FROM events WHERE run_id = ? ORDER BY rowid", (run_id,)
            ):
                try:
                    tasks, changes = load_event_states(data)
                except LegacyEvents:
                    continue  # not read, as in events()
                except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                    raise self.damaged(f"event batch {rowid} of run {run_id!r}", exc) from exc
                states.update(zip(tasks, changes, strict=True))
            done = conn.execute("SELECT task FROM results WHERE run_id = ?",
                                (run_id,)).fetchall()
        for (name,) in done:  # as detail(): a stored result means completed
            states[str(name)] = "completed"
        return states

    def detail(self, run_id: str, only: Iterable[str] | None = None) -> RunRecord | None:
        """One run with every task's state changes, attempts, errors and result note;
        ``only``: those tasks' records alone (a page listing some of a big run's tasks)."""
        record = self.run(run_id)
        if record is None:
            return None
        wanted = None if only is None else set(only)
        with self.read() as conn:
            events = self.events(conn, run_id, wanted)
            errors = conn.execute(
                "SELECT task, t, error_type, message, traceback FROM errors WHERE run_id = ?"
                " ORDER BY rowid",
                (run_id,),
            ).fetchall()
            results = conn.execute(
                "SELECT task, kind, note, cache_hit FROM results WHERE run_id = ?", (run_id,)
            ).fetchall()
        # What is shown is text: a row holding something else was not written by taskloom.
        for table, rows, text_columns in (("errors", errors, (0, 2, 3, 4)),
                                          ("results", results, (0, 1, 2))):
            for row in rows:
                bad = [i for i in text_columns if row[i] is not None and not isinstance(
                    row[i], str)]
                if bad or not isinstance(row[0], str):
                    raise self.damaged(
                        f"a row of {table} of run {run_id!r}",
                        ValueError(f"column {bad[0] if bad else 0} is not text"),
                    )
        tasks: dict[str, TaskRecord] = {}
        for _, name, state, t in events:
            rec = tasks.get(name)
            if rec is None:
                rec = tasks[name] = TaskRecord(name, state)
            rec.events.append((state, t))
            rec.state = state
        by_time = {(name, t): (etype, msg, tb) for name, t, etype, msg, tb in errors}
        erred = {name for name, _ in by_time}
        for rec in tasks.values():
            rec.attempts = list(_attempts(rec, by_time))
            if rec.name not in erred:  # most tasks of a big run: nothing to look up
                continue
            for state, t in rec.events:
                if (rec.name, t) in by_time and state in ("failed", "cancelled"):
                    rec.error_type, rec.error, _ = by_time[(rec.name, t)]
        for name, kind, note, hit in results:
            if wanted is not None and name not in wanted:
                continue
            rec = tasks.get(name)
            if rec is None:  # committed before its events (durability "safe")
                rec = tasks[name] = TaskRecord(name, "completed")
            rec.state = "completed"
            rec.result_kind, rec.result_note, rec.cache_hit = kind, note, bool(hit)
        record.tasks = list(tasks.values())
        if not record.counts:
            record.counts = self._counts(run_id)
        return record


#: The ``runs`` columns :meth:`RunHistory._record` reads, in its order.
_RUN_COLUMNS = ("id, workflow, status, started, finished, duration, counts, config_path,"
                " config_hash, resumes, pid, host, trigger, parent_id")

#: Every table holding rows of a run (``runs`` by ``id``, the others by ``run_id``).
_RUN_TABLES = ("events", "errors", "results", "logs", "run_actions", "signals", "waits", "runs")

#: States an attempt ends in; anything else after ``running`` means it was cut off.
_ATTEMPT_ENDS = frozenset({"completed", "failed", "cancelled", "retrying"})


def _attempts(
    rec: TaskRecord, errors: dict[tuple[str, float], tuple[Any, Any, Any]]
) -> Iterator[AttemptRecord]:
    current: AttemptRecord | None = None
    number = 0
    for state, t in rec.events:
        if current is not None:
            if state in _ATTEMPT_ENDS:
                current.finished = t
                current.state = state
                err = errors.get((rec.name, t))
                if err is not None:
                    current.error_type, current.error, current.traceback = err
            # else the process died while the attempt ran (resume re-admitted the task):
            # it stays "running" with no end, which is shown as interrupted.
            yield current
            current = None
        if state == "running":
            number += 1
            current = AttemptRecord(number, t, None, "running")
    if current is not None:
        yield current
