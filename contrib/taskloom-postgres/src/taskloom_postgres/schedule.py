"""Scheduler state in PostgreSQL: what each job did last and one claim per fire time.

A claim is a row with the unique key ``(job_id, fire_time)`` inserted with ``ON CONFLICT DO
NOTHING``: of any number of schedulers on any hosts, exactly one insert succeeds and only its
scheduler fires. A call returns once its claim committed: a claim is decided before the run
starts. Saving a job's state notifies ``taskloom_postgres.notify.SCHEDULES``.

Claims are made with one statement for many fires (``INSERT ... SELECT FROM unnest(...) ON
CONFLICT DO NOTHING RETURNING``): :meth:`PostgresScheduleState.claim_and_save` claims every
fire a scheduler found due in one pass and saves the state of the jobs it won in the same
transaction, and concurrent claims and saves (a scheduler's catch-up threads) share one
transaction (group commit). A pass costs one commit instead of two per fire. Claims commit
with ``synchronous_commit`` on: a claim lost by a server crash could be fired again.
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


class _Request:
    """Claims and saves one caller waits for: ``claims`` as ``(job_id, fire_time, owner,
    state to save if won)``, ``saves`` as ``(job_id, state text)``."""

    __slots__ = ("claims", "error", "saves", "won")

    def __init__(self, claims: list[tuple[str, float, str, str | None]],
                 saves: list[tuple[str, str]]) -> None:
        self.claims = claims
        self.saves = saves
        self.won: set[tuple[str, float]] | None = None
        self.error: BaseException | None = None


class PostgresScheduleState:
    """:class:`taskloom.api.scheduling.ScheduleState` on one connection of its own.

    Claims and saves are group-committed: a caller that finds the connection busy queues its
    request, and the next transaction carries every request queued meanwhile (one claim
    statement and one save statement for all of them), each caller returning once the
    transaction holding its request committed. A scheduler's catch-up threads, each claiming
    and saving one fire at a time, so share commits instead of queueing one commit each.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # the connection
        self._cond = threading.Condition()  # the queue below and the leader's turn
        self._queue: list[_Request] = []
        self._leading = False

    def load(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT state FROM schedule_state WHERE job_id = %s", (job_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save(self, job_id: str, state: dict[str, Any]) -> None:
        self._submit(_Request([], [(job_id, json.dumps(state, sort_keys=True, default=str))]))

    def claim(self, job_id: str, fire_time: float, owner: str) -> bool:
        fire = (job_id, float(fire_time))
        return fire in self._submit(_Request([(*fire, owner, None)], []))

    def claim_and_save(self, fires: list[tuple[str, float, dict[str, Any]]],
                       owner: str) -> set[tuple[str, float]]:
        """Claim each ``(job_id, fire_time, state)`` for ``owner`` and save ``state`` for the
        jobs whose claim this call won, in one transaction; return the ``(job_id,
        fire_time)`` won (the same promise as :meth:`claim`, for many at once)."""
        if not fires:
            return set()
        return self._submit(_Request(
            [(job, float(t), owner, json.dumps(state, sort_keys=True, default=str))
             for job, t, state in fires], []))

    def _submit(self, request: _Request) -> set[tuple[str, float]]:
        with self._cond:
            self._queue.append(request)
            while request.won is None and request.error is None:
                if self._leading:
                    self._cond.wait()
                    continue
                # This caller writes everything queued so far, its own request included.
                self._leading = True
                batch, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._write(batch)
                except BaseException as exc:
                    for waiting in batch:
                        waiting.error = exc
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        assert request.won is not None
        return request.won

    def _write(self, batch: list[_Request]) -> None:
        claims = [claim for request in batch for claim in request.claims]
        now = time.time()
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            taken: set[tuple[str, float]] = set()
            if claims:
                cur.execute(
                    "INSERT INTO schedule_claims(job_id, fire_time, owner, claimed)"
                    " SELECT j, f, o, %s FROM unnest(%s::text[], %s::double precision[],"
                    " %s::text[]) AS t(j, f, o) ON CONFLICT DO NOTHING"
                    " RETURNING job_id, fire_time",
                    (now, [c[0] for c in claims], [c[1] for c in claims],
                     [c[2] for c in claims]),
                )
                taken = {(job, float(t)) for job, t in cur.fetchall()}
            states: dict[str, str] = {}  # one row per job: the latest request's state
            for request in batch:
                won: set[tuple[str, float]] = set()
                for job, t, _, state in request.claims:
                    if (job, t) in taken:  # the first asker of a fire asked twice wins it
                        taken.discard((job, t))
                        won.add((job, t))
                        if state is not None:
                            states[job] = state
                for job, state in request.saves:
                    states[job] = state
                request.won = won
            if states:
                cur.execute(
                    "INSERT INTO schedule_state(job_id, state, updated)"
                    " SELECT j, s, %s FROM unnest(%s::text[], %s::text[]) AS t(j, s)"
                    " ON CONFLICT (job_id) DO UPDATE SET state = excluded.state,"
                    " updated = excluded.updated",
                    (now, list(states), list(states.values())),
                )
                # A dashboard's schedule view wakes at the commit.
                notify(cur, SCHEDULES, next(iter(states)) if len(states) == 1 else "")

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
