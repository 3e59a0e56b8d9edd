"""Run claims in PostgreSQL: one process runs a run id at a time and at most
``max_active_runs`` runs of a workflow go at once, across every host sharing the database
(the same promises as the SQLite store's ``run_claims``; see ``taskloom_std.stores.claims``).

A claim is a row of ``run_claims`` (primary key ``run_id``) naming its process (pid, host)
and its last heartbeat, in the database server's clock so that hosts whose clocks differ
agree on a lease. One short transaction per attempt:

1. a transaction-scoped advisory lock on the workflow: claimants of one workflow count its
   rows one at a time, so two of them can never both see one place left under
   ``max_active_runs`` (row locks alone cannot lock rows that do not exist yet);
2. the rows of this run id and workflow that belong to dead holders are deleted (a pid gone
   on this host, or no heartbeat for ``claim_lease`` seconds), with ``FOR UPDATE SKIP
   LOCKED``: a row another claimant is already taking over is left to it;
3. ``INSERT ... ON CONFLICT DO NOTHING``: of any number of claimants of one run id, exactly
   one insert succeeds.

A release deletes the row and sends a notification (``taskloom_postgres.notify.CLAIMS``) in
the same transaction, so waiting claimants try again as soon as it commits; between
notifications they poll, bounded (at most every ``MAX_POLL`` seconds), for leases that
expire without anyone saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from taskloom_postgres.notify import CLAIMS, Listener, notify
from taskloom_std.stores.claims import Busy, check_options, claim_loop, owner_label
from taskloom_std.stores.errors import StoreError

log = logging.getLogger("taskloom.store")

#: First key of the advisory locks that serialise claimants of one workflow ("TLRC").
CLAIM_LOCK = 0x544C5243

# The run claims this process holds, by (database, run id): a row naming this pid that is
# not here was left by a release that could not be written, and is stale.
_CLAIMED_HERE: set[tuple[str, str]] = set()
_NOW = "extract(epoch from clock_timestamp())"


class RunClaims:
    """The claims of one store: its own connection (autocommit, one transaction per
    attempt), the heartbeats the store's writer thread asks for, and the releases."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], key: str, where: str,
                 lease: float, listener: Listener) -> None:
        self._connect = connect
        self.key = key  # the database, in this process's set of claims held
        self.where = where  # the database, for messages (no password)
        self.lease = lease
        self.listener = listener
        self._host = socket.gethostname()
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self.held: dict[str, int] = {}  # run ids claimed here: the claiming thread
        self._unreleased: set[str] = set()  # released, but the row could not be deleted yet

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            try:
                yield self._conn
            except psycopg.OperationalError as exc:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None
                raise StoreError(f"store 'postgres': claiming at {self.where} failed: "
                                 f"{str(exc).strip()}") from exc

    def claim(self, run_id: str, workflow: str | None, *, on_conflict: str,
              max_active_runs: int | None, on_limit: str) -> Callable[[], None]:
        check_options(on_conflict, on_limit, max_active_runs)
        me = threading.get_ident()
        if self.held.get(run_id) == me:
            return _nothing  # this thread holds it already (run() resuming)

        def attempt() -> Busy | None:
            busy = self._claim_once(run_id, workflow, max_active_runs)
            if busy is None:
                self.held[run_id] = me
            elif busy.kind == "conflict" and self.held.get(run_id) is not None:
                return Busy("conflict", (f"{owner_label()} (another thread)",))
            return busy

        wake = self.listener.event(CLAIMS)
        try:
            claim_loop(attempt, run_id, workflow, on_conflict=on_conflict, on_limit=on_limit,
                       max_active_runs=max_active_runs, wake=wake)
        finally:
            self.listener.forget(CLAIMS, wake)

        def release() -> None:
            self.held.pop(run_id, None)
            _CLAIMED_HERE.discard((self.key, run_id))
            self._unreleased.add(run_id)
            self.delete_released()

        return release

    def _dead(self, run_id: str, pid: int, host: str, stale: bool) -> str | None:
        """Why the holder of a row is dead, or None when it lives."""
        if stale:
            return "no heartbeat within the lease"
        if host != self._host:
            return None
        if pid == os.getpid():
            return None if (self.key, run_id) in _CLAIMED_HERE else "released here"
        import psutil

        return None if psutil.pid_exists(pid) else "gone"

    def _claim_once(self, run_id: str, workflow: str | None,
                    max_active_runs: int | None) -> Busy | None:
        try:
            try:
                return self._try_claim(run_id, workflow, max_active_runs)
            except StoreError:
                # The connection was dropped since the last claim (a server restart, an
                # administrator): once more on a new one.
                return self._try_claim(run_id, workflow, max_active_runs)
        except BaseException:
            if self.held.get(run_id) is None:
                _CLAIMED_HERE.discard((self.key, run_id))
            raise

    def _try_claim(self, run_id: str, workflow: str | None,
                   max_active_runs: int | None) -> Busy | None:
        granted = False
        row = None
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Every claimant of the workflow, limited or not, so that a count is never
            # short of a row being inserted beside it.
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                        (CLAIM_LOCK, workflow or ""))
            cur.execute(
                f"SELECT run_id, pid, host, heartbeat < {_NOW} - %s FROM run_claims"
                " WHERE run_id = %s OR (%s AND workflow IS NOT DISTINCT FROM %s)"
                " FOR UPDATE SKIP LOCKED",
                (self.lease, run_id, max_active_runs is not None, workflow),
            )
            for held_id, pid, host, stale in cur.fetchall():
                why = self._dead(held_id, pid, host, stale)
                if why is not None:
                    log.warning("run %s: taking over the claim of process %s@%s (%s)",
                                held_id, pid, host, why)
                    cur.execute("DELETE FROM run_claims WHERE run_id = %s", (held_id,))
            if max_active_runs is not None:
                cur.execute(
                    "SELECT run_id, pid, host FROM run_claims WHERE workflow IS NOT DISTINCT"
                    " FROM %s ORDER BY claimed", (workflow,),
                )
                same = cur.fetchall()
                if len(same) >= max_active_runs and run_id not in {r[0] for r in same}:
                    return Busy("limit", tuple(
                        f"{owner_label(pid, host)} (run {rid})" for rid, pid, host in same))
            cur.execute(
                "INSERT INTO run_claims(run_id, workflow, pid, host, claimed, heartbeat)"
                f" VALUES (%s, %s, %s, %s, {_NOW}, {_NOW}) ON CONFLICT (run_id) DO NOTHING",
                (run_id, workflow, os.getpid(), self._host),
            )
            if cur.rowcount == 1:
                # Known here before it commits: another store of this process must never
                # take the new row for one a failed release left behind.
                _CLAIMED_HERE.add((self.key, run_id))
                granted = True
            else:
                cur.execute("SELECT pid, host FROM run_claims WHERE run_id = %s", (run_id,))
                row = cur.fetchone()
        if granted:
            return None
        holder = owner_label(row[0], row[1]) if row else "another process (just released)"
        return Busy("conflict", (holder,))

    def delete_released(self) -> None:
        """Delete the rows of released claims and say so to waiting claimants; those that
        cannot be deleted now (the database is away) are tried again at the next heartbeat,
        and meanwhile run out their lease."""
        for run_id in list(self._unreleased):
            try:
                with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "DELETE FROM run_claims WHERE run_id = %s AND pid = %s AND host = %s"
                        " RETURNING workflow", (run_id, os.getpid(), self._host),
                    )
                    row = cur.fetchone()
                    notify(cur, CLAIMS, (row[0] or "") if row else "")
            except (psycopg.Error, StoreError) as exc:
                log.debug("store %s: releasing run %s: %s", self.where, run_id, exc)
                return
            self._unreleased.discard(run_id)

    def heartbeat(self) -> None:
        """Tell other processes this one still runs its claims (the writer thread calls it
        every third of the lease)."""
        self.delete_released()
        held = list(self.held)
        if not held:
            return
        try:
            with self._connection() as conn:
                conn.execute(
                    f"UPDATE run_claims SET heartbeat = {_NOW} WHERE pid = %s AND host = %s"
                    " AND run_id = ANY(%s)", (os.getpid(), self._host, held),
                )
        except (psycopg.Error, StoreError) as exc:  # tried again at the next beat
            log.debug("store %s: heartbeat failed: %s", self.where, exc)

    @property
    def busy(self) -> bool:
        return bool(self.held or self._unreleased)

    def close(self) -> None:
        for run_id in list(self.held):
            _CLAIMED_HERE.discard((self.key, run_id))
        self._unreleased.update(self.held)
        self.held.clear()
        self.delete_released()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None


def _nothing() -> None:
    """The release of a claim this thread already held: the outer holder releases it."""
