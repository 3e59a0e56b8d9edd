"""Scheduler state in the SQLite store: what each job did last and one claim per fire time.

Two schedulers on one database both try to claim a due run; the claim is a row with a
unique key ``(job_id, fire_time)``, so exactly one ``INSERT`` succeeds and only its scheduler
fires. Claims and saves are committed at once (not through the batching writer): a claim
must be decided before the run starts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

from taskloom_std.stores.errors import StoreLockedError
from taskloom_std.stores.schema import SKIPS_KEPT

if TYPE_CHECKING:
    from taskloom_std.stores.sqlite import SqliteStore


class SqliteScheduleState:
    """:class:`taskloom.api.scheduling.ScheduleState` on a :class:`SqliteStore`'s database."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._conn = store._connect()

    def _run(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StoreLockedError(self._store._locked_message()) from exc
            raise

    def load(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._run(
                "SELECT state FROM schedule_state WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save(self, job_id: str, state: dict[str, Any]) -> None:
        text = json.dumps(state, sort_keys=True, default=str)
        with self._lock:
            self._run(
                "INSERT OR REPLACE INTO schedule_state(job_id, state, updated) VALUES (?, ?, ?)",
                (job_id, text, time.time()),
            )

    def claim(self, job_id: str, fire_time: float, owner: str) -> bool:
        with self._lock:
            cur = self._run(
                "INSERT OR IGNORE INTO schedule_claims(job_id, fire_time, owner, claimed)"
                " VALUES (?, ?, ?, ?)",
                (job_id, float(fire_time), owner, time.time()),
            )
            return cur.rowcount == 1

    def record_skip(self, job_id: str, kind: str, scheduled_for: float,
                    detail: str | None = None) -> None:
        """Keep a fire the scheduler skipped (``misfire`` or ``overlap``), and only the newest
        :data:`SKIPS_KEPT` of the job."""
        with self._lock:
            self._run(
                "INSERT INTO schedule_skips(job_id, kind, scheduled_for, recorded, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, kind, float(scheduled_for), time.time(), detail),
            )
            self._run(
                "DELETE FROM schedule_skips WHERE job_id = ? AND id <= (SELECT id FROM"
                " schedule_skips WHERE job_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (job_id, job_id, SKIPS_KEPT),
            )

    def skips(self, job_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The job's newest skipped fires, newest first: ``kind``, ``scheduled_for`` and
        ``recorded`` (epoch seconds), ``detail``."""
        with self._lock:
            rows = self._run(
                "SELECT kind, scheduled_for, recorded, detail FROM schedule_skips"
                " WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, limit),
            ).fetchall()
        return [{"kind": k, "scheduled_for": s, "recorded": r, "detail": d}
                for k, s, r, d in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
