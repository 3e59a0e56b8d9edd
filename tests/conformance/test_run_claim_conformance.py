"""Run-id claims and ``max_active_runs``, checked on every store that keeps them: a held id
is refused or waited for by name, a workflow's limit is counted across stores on one
database, and a dead holder's claim (its lease run out, or its process gone) is taken over.
Real processes racing on one id are in the stores' own tests."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskloom import Task
from taskloom_std.stores.claims import RunClaimedError

HOST = socket.gethostname()


def _other(store_kind: Any, first: Any) -> Any:
    """A second claimant: another store on the same database (memory: the same store, which
    only this process shares)."""
    return store_kind.open() if store_kind.persistent else first


def _in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` called from another thread (a thread's own claims are re-entrant); its
    result, or the exception it raised."""
    box: list[Any] = []

    def call() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=call)
    t.start()
    t.join(60)
    assert box, "the claim neither returned nor raised within 60 s"
    return box[0]


def test_a_held_run_id_is_refused_naming_its_holder_then_free(store_kind):
    first = store_kind.open()
    release = first.claim_run("r1", "wf")
    second = _other(store_kind, first)
    refused = _in_thread(lambda: second.claim_run("r1", "wf", on_conflict="error"))
    assert isinstance(refused, RunClaimedError)
    assert f"run 'r1' is running in process {os.getpid()}@{HOST}" in str(refused)
    assert first.claim_run("r1", "wf") is not release  # re-entrant in the holding thread
    release()
    granted = _in_thread(lambda: second.claim_run("r1", "wf", on_conflict="error"))
    assert callable(granted)
    granted()


def test_max_active_runs_is_counted_across_stores(store_kind):
    first = store_kind.open()
    held = [first.claim_run("a", "wf", max_active_runs=2),
            first.claim_run("b", "wf", max_active_runs=2)]
    second = _other(store_kind, first)
    refused = _in_thread(lambda: second.claim_run("c", "wf", max_active_runs=2,
                                                  on_limit="refuse"))
    assert isinstance(refused, RunClaimedError)
    assert "workflow 'wf' already has 2 active run(s) (max_active_runs)" in str(refused)
    other_workflow = _in_thread(lambda: second.claim_run("d", "other", max_active_runs=1,
                                                         on_limit="refuse"))
    assert callable(other_workflow)  # the limit is per workflow
    held.pop()()
    granted = _in_thread(lambda: second.claim_run("c", "wf", max_active_runs=2,
                                                  on_limit="refuse"))
    assert callable(granted)
    for release in (*held, granted, other_workflow):
        release()


class _Waiting(logging.Handler):
    """Set when a claimant logs that it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting" in record.getMessage():
            self.seen.set()


def test_a_waiting_claimant_gets_the_id_when_it_is_released(store_kind):
    first = store_kind.open()
    release = first.claim_run("r1", "wf")
    second = _other(store_kind, first)
    waiting = _Waiting()
    logger = logging.getLogger("taskloom.store")
    logger.addHandler(waiting)
    try:
        result: list[Any] = []
        t = threading.Thread(target=lambda: result.append(second.claim_run("r1", "wf")))
        t.start()
        assert waiting.seen.wait(30)
        assert not result
        release()
        t.join(30)
    finally:
        logger.removeHandler(waiting)
    assert len(result) == 1 and callable(result[0])
    result[0]()


def test_a_claim_whose_lease_ran_out_is_taken_over(persistent_kind):
    persistent_kind.plant_claim("r1", "wf", 4242, "elsewhere.example", time.time() - 120)
    persistent_kind.plant_claim("r2", "wf", 4242, "elsewhere.example", time.time())
    engine = persistent_kind.engine(claim_lease=60)
    summary = engine.run([Task("a", fn=lambda: 1)], run_id="r1", on_conflict="error")
    assert summary.ok and summary.results == {"a": 1}
    with pytest.raises(RunClaimedError,
                       match=r"run 'r2' is running in process 4242@elsewhere\.example"):
        engine.run([Task("a", fn=lambda: 1)], run_id="r2", on_conflict="error")


def test_a_claim_of_a_process_gone_on_this_host_is_taken_over(persistent_kind):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    persistent_kind.plant_claim("r1", "wf", gone.pid, HOST, time.time())
    store = persistent_kind.open()
    release = store.claim_run("r1", "wf", on_conflict="error", max_active_runs=1,
                              on_limit="refuse")
    release()


def test_engine_runs_claim_their_id(store_kind):
    engine = store_kind.engine()
    other = store_kind.engine() if store_kind.persistent else engine
    inside, go = threading.Event(), threading.Event()

    def gate() -> int:
        inside.set()
        go.wait(30)
        return 1

    t = threading.Thread(target=engine.run, args=([Task("a", fn=gate)],),
                         kwargs={"run_id": "r1"})
    t.start()
    assert inside.wait(30)
    try:
        refused = _in_thread(lambda: other.run([Task("a", fn=lambda: 2)], run_id="r1",
                                               on_conflict="error"))
    finally:
        go.set()
        t.join(30)
    assert isinstance(refused, RunClaimedError)
    again = other.run([Task("a", fn=lambda: 2)], run_id="r1", on_conflict="error")
    assert again.ok and again.results == {"a": 1}  # recorded: not run again


def test_max_active_runs_is_never_exceeded_by_threads_racing_on_four_stores(store_kind):
    stores = [store_kind.open()]
    stores += [_other(store_kind, stores[0]) for _ in range(3)]
    lock = threading.Lock()
    holding: list[int] = [0]
    most: list[int] = [0]
    granted: list[str] = []
    failures: list[BaseException] = []

    def claimant(which: int, number: int) -> None:
        store = stores[which]
        try:
            for round_ in range(4):
                run_id = f"r{number}-{round_}"
                release = store.claim_run(run_id, "wf", max_active_runs=1)
                with lock:
                    holding[0] += 1
                    most[0] = max(most[0], holding[0])
                    granted.append(run_id)
                store.flush()  # a round trip to the store while holding the place
                with lock:
                    holding[0] -= 1
                release()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=claimant, args=(i % 4, i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    assert sorted(granted) == sorted(f"r{i}-{r}" for i in range(8) for r in range(4))
    assert most[0] == 1
