"""Wake-ups through PostgreSQL's LISTEN/NOTIFY instead of polling in a tight loop.

Every change another process may be waiting for sends a notification in the transaction that
makes it, so it arrives exactly when the change is committed (never before, and not at all
when the transaction rolls back). Notifications are scoped to the database, so each channel
below is already "per database":

* :data:`RUNS`: a run started or finished, or its records were committed (payload: the run
  id); a dashboard's live views wake on it.
* :data:`CLAIMS`: a run claim was released or taken over (payload: the workflow, or empty);
  a process waiting for a run id or a place under ``max_active_runs`` tries again at once.
* :data:`SCHEDULES`: a job's schedule state was saved (payload: the job id, or empty when
  a scheduler saved many at once).
* :data:`SIGNALS`: a signal was recorded (payload: JSON ``[run id, name]``); a step waiting
  for it in any process takes it at once (:mod:`taskloom_postgres.signals`).

A :class:`Listener` holds one connection of its own and one thread that waits on it. Waiting
is bounded by the caller: a notification lost with a dropped connection only delays a
claimant until its next bounded poll (``taskloom_std.stores.claims.MAX_POLL``). A subscriber
(:meth:`Listener.subscribe`) is told ``None`` each time the connection listens again, so it
can look for what it missed meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger("taskloom.store")

RUNS = "taskloom_runs"
CLAIMS = "taskloom_claims"
SCHEDULES = "taskloom_schedules"
SIGNALS = "taskloom_signals"
CHANNELS = (RUNS, CLAIMS, SCHEDULES, SIGNALS)

#: How long the listening thread waits on its connection before it checks whether to stop.
_TICK = 0.25
#: The pause before a dropped listening connection is made again.
_RECONNECT = 1.0


def notify(cur: Any, channel: str, payload: str = "") -> None:
    """Send ``payload`` on ``channel`` when the current transaction commits."""
    cur.execute("SELECT pg_notify(%s, %s)", (channel, payload[:7000]))


class Listener:
    """Listens on :data:`CHANNELS` with its own connection; :meth:`event` gives a
    :class:`threading.Event` set at each notification on a channel (each caller its own)."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._events: dict[str, list[threading.Event]] = {c: [] for c in CHANNELS}
        self._subscribers: dict[str, list[Callable[[str | None], None]]] = {
            c: [] for c in CHANNELS}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self.received = 0
        self._thread = threading.Thread(target=self._loop, name="taskloom-pg-listen",
                                        daemon=True)
        self._thread.start()

    def event(self, channel: str) -> threading.Event:
        """A new event that every notification on ``channel`` sets (the caller clears it)."""
        found = threading.Event()
        with self._lock:
            self._events[channel].append(found)
        return found

    def forget(self, channel: str, event: threading.Event) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._events[channel].remove(event)

    def subscribe(self, channel: str, fn: Callable[[str | None], None]) -> None:
        """Call ``fn(payload)`` in the listening thread at each notification on ``channel``,
        and ``fn(None)`` whenever the connection (re)starts listening."""
        with self._lock:
            self._subscribers[channel].append(fn)

    def wait_ready(self, timeout: float) -> bool:
        """Whether the connection listens (notifications committed from now on arrive)."""
        return self._ready.wait(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # the database is away: waiters fall back to polling
                log.debug("listening for notifications: %s", exc)
                self._stop.wait(_RECONNECT)
                continue
            with self._lock:
                self._conn = conn
            try:
                for channel in CHANNELS:
                    conn.execute(f"LISTEN {channel}")
                self._wake_all()  # anything sent while no connection listened was missed
                self._ready.set()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=_TICK):
                        self.received += 1
                        with self._lock:
                            waiting = list(self._events.get(note.channel, ()))
                        for event in waiting:
                            event.set()
                        self._tell(note.channel, note.payload)
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.debug("listening for notifications: %s; listening again", exc)
                    self._stop.wait(_RECONNECT)
            finally:
                self._ready.clear()
                with self._lock:
                    self._conn = None
                with contextlib.suppress(psycopg.Error):
                    conn.close()

    def _wake_all(self) -> None:
        with self._lock:
            waiting = [e for events in self._events.values() for e in events]
        for event in waiting:
            event.set()
        for channel in CHANNELS:
            self._tell(channel, None)

    def _tell(self, channel: str, payload: str | None) -> None:
        with self._lock:
            fns = list(self._subscribers.get(channel, ()))
        for fn in fns:
            try:
                fn(payload)
            except Exception as exc:  # one subscriber's failure stops no other
                log.error("a notification on %s: %s", channel, exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(_TICK * 3)


class ChannelWatch:
    """One waiter's subscription to a channel (``taskloom.api.history.ChangeWatch``): a
    notification sent while the waiter was busy is not lost, it ends the next wait."""

    def __init__(self, listener: Listener, channel: str) -> None:
        self._listener = listener
        self._channel = channel
        self._event = listener.event(channel)

    def wait(self, timeout: float) -> bool:
        woke = self._event.wait(timeout)
        # Cleared after the wait: what a notification arriving now announces is committed
        # already, so the waiter's next read sees it.
        self._event.clear()
        return woke

    def close(self) -> None:
        self._listener.forget(self._channel, self._event)
