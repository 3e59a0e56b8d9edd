"""Scheduler state in PostgreSQL: what each job did last and one claim per fire time.

A claim is a row with the unique key ``(job_id, fire_time)`` inserted with ``ON CONFLICT DO
NOTHING``: of any number of schedulers on any hosts, exactly one insert succeeds and only its
scheduler fires. Each call is its own committed statement (autocommit): a claim is decided
before the run starts. Saving a job's state notifies ``taskloom_postgres.notify.SCHEDULES``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg

from taskloom_postgres.notify import SCHEDULES, notify


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

    def close(self) -> None:
        with self._lock:
            self._conn.close()
