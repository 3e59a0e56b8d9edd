"""Scheduler state in PostgreSQL: what each job did last and one claim per fire time.

A claim is a row with the unique key ``(job_id, fire_time)`` inserted with ``ON CONFLICT DO
NOTHING``: of any number of schedulers on any hosts, exactly one insert succeeds and only its
scheduler fires. Each call is its own committed statement (autocommit): a claim is decided
before the run starts. Saving a job's state notifies ``taskloom_postgres.notify.SCHEDULES``.
The fires a scheduler skipped (misfires, overlaps) are kept per job, the newest
:data:`~taskloom_std.stores.schema.SKIPS_KEPT`, for the dashboard's Schedules page.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg

from taskloom_postgres.notify import SCHEDULES, notify
from taskloom_std.stores.schema import SKIPS_KEPT


class PostgresScheduleState:
    """:class:`taskloom.api.scheduling.ScheduleState` on one connection of its own."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def load(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM schedule_state WHERE job_id = %s", (job_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save(self, job_id: str, state: dict[str, Any]) -> None:
        text = json.dumps(state, sort_keys=True, default=str)
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                "INSERT INTO schedule_state(job_id, state, updated) VALUES (%s, %s, %s)"
                " ON CONFLICT (job_id) DO UPDATE SET state = excluded.state,"
                " updated = excluded.updated",
                (job_id, text, time.time()),
            )
            notify(cur, SCHEDULES, job_id)  # a dashboard's schedule view wakes at the commit

    def claim(self, job_id: str, fire_time: float, owner: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO schedule_claims(job_id, fire_time, owner, claimed)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (job_id, float(fire_time), owner, time.time()),
            )
            return cur.rowcount == 1

    def record_skip(self, job_id: str, kind: str, scheduled_for: float,
                    detail: str | None = None) -> None:
        """Keep a fire the scheduler skipped (``misfire`` or ``overlap``), and only the newest
        :data:`SKIPS_KEPT` of the job."""
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                "INSERT INTO schedule_skips(job_id, kind, scheduled_for, recorded, detail)"
                " VALUES (%s, %s, %s, %s, %s)",
                (job_id, kind, float(scheduled_for), time.time(), detail),
            )
            cur.execute(
                "DELETE FROM schedule_skips WHERE job_id = %s AND id <= (SELECT id FROM"
                " schedule_skips WHERE job_id = %s ORDER BY id DESC LIMIT 1 OFFSET %s)",
                (job_id, job_id, SKIPS_KEPT),
            )
            notify(cur, SCHEDULES, job_id)

    def skips(self, job_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The job's newest skipped fires, newest first: ``kind``, ``scheduled_for`` and
        ``recorded`` (epoch seconds), ``detail``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, scheduled_for, recorded, detail FROM schedule_skips"
                " WHERE job_id = %s ORDER BY id DESC LIMIT %s", (job_id, limit),
            ).fetchall()
        return [{"kind": k, "scheduled_for": s, "recorded": r, "detail": d}
                for k, s, r, d in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
