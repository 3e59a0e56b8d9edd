"""Run claims: one process runs a run id at a time, and at most ``max_active_runs`` runs of a
workflow run at once, across the processes sharing a store.

A store grants a claim or names its holder (``pid@host``); :func:`claim_loop` turns that into
waiting or an error, as asked. A store decides itself when a holder is dead (its pid is gone
on this host, or its heartbeat stopped for longer than the lease) and takes the claim over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskloom import TaskloomError

log = logging.getLogger("taskloom.store")

ON_CONFLICT = ("wait", "error")
ON_LIMIT = ("wait", "refuse")

#: Longest pause between two attempts of a waiting claim, in seconds.
MAX_POLL = 0.5


class RunClaimedError(TaskloomError):
    """The run id is running in another process (``on_conflict = "error"``), or the
    workflow has ``max_active_runs`` runs going (``on_limit = "refuse"``). ``busy`` says
    which, and who holds the claims."""

    def __init__(self, message: str, busy: Busy | None = None) -> None:
        super().__init__(message)
        self.busy = busy


@dataclass(frozen=True)
class Busy:
    """Why a claim was not granted: ``conflict`` (the id is held) or ``limit`` (the workflow
    is at ``max_active_runs``), and by whom."""

    kind: str
    holders: tuple[str, ...]


def owner_label(pid: int | None = None, host: str | None = None) -> str:
    return f"{os.getpid() if pid is None else pid}@{host or socket.gethostname()}"


def check_options(on_conflict: str, on_limit: str, max_active_runs: int | None) -> None:
    if on_conflict not in ON_CONFLICT:
        raise TaskloomError(f"on_conflict must be 'wait' or 'error', got {on_conflict!r}")
    if on_limit not in ON_LIMIT:
        raise TaskloomError(f"on_limit must be 'wait' or 'refuse', got {on_limit!r}")
    if max_active_runs is not None and (
        isinstance(max_active_runs, bool) or not isinstance(max_active_runs, int)
        or max_active_runs < 1
    ):
        raise TaskloomError(f"max_active_runs must be a positive integer, got {max_active_runs!r}")


def claim_loop(
    attempt: Callable[[], Busy | None],
    run_id: str,
    workflow: str | None,
    *,
    on_conflict: str,
    on_limit: str,
    max_active_runs: int | None,
    wake: threading.Event | None = None,
) -> None:
    """Call ``attempt`` until it grants the claim; raise :class:`RunClaimedError` when the
    answer is busy and the matching option says not to wait."""
    pause = 0.01
    told: Busy | None = None
    while True:
        busy = attempt()
        if busy is None:
            return
        if busy.kind == "conflict" and on_conflict == "error":
            raise RunClaimedError(
                f"run {run_id!r} is running in process {', '.join(busy.holders)}", busy
            )
        if busy.kind == "limit" and on_limit == "refuse":
            raise RunClaimedError(
                f"workflow {workflow!r} already has {max_active_runs} active run(s) "
                f"(max_active_runs), in process {', '.join(busy.holders)}; run {run_id!r} "
                "not started", busy
            )
        if busy != told:
            told = busy
            what = (f"run {run_id!r} is running in process" if busy.kind == "conflict" else
                    f"workflow {workflow!r} is at max_active_runs = {max_active_runs}: runs in")
            log.warning("%s %s; waiting", what, ", ".join(busy.holders))
        # Another process gives no signal when it lets go: poll, a little less often each time.
        if wake is not None:
            wake.wait(pause)
            wake.clear()
        else:
            time.sleep(pause)
        pause = min(pause * 2, MAX_POLL)
