"""The SQLite store's history side: interrupted runs and their reason, the run list's
interrupted filter, and deleting old runs (``prune``)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from taskloom import Engine, Task
from taskloom.api.history import PrunableHistory
from taskloom_std.stores import StoreError
from taskloom_std.stores.sqlite import SqliteStore


def _engine(db: Path) -> Engine:
    return Engine(max_workers=2, store="sqlite", store_options={"path": str(db)})


def _interrupted_run(engine: Engine, reason: str, finish_all: bool) -> str:
    """first runs until released; second waits for it. The run is interrupted while first
    runs; unless ``finish_all``, second is cancelled as a first Ctrl-C does."""
    started, release = threading.Event(), threading.Event()

    def first() -> int:
        started.set()
        release.wait(10)
        return 1

    run = engine.open_run(name="w")
    run.add([Task("first", fn=first),
             Task("second", fn=lambda first: first + 1, dependencies=["first"])])
    run.start()
    assert started.wait(10)
    run.interrupt(reason)
    if not finish_all:
        run.cancel_task(run.tasks["second"])
    release.set()
    run.wait(10)
    summary = run.close()
    assert summary.status == ("completed" if finish_all else "interrupted")
    return run.id


def test_an_interrupted_run_is_recorded_with_its_reason(tmp_path):
    engine = _engine(tmp_path / "h.db")
    stopped = _interrupted_run(engine, "SIGTERM, SIGINT", finish_all=False)
    finished = _interrupted_run(engine, "SIGINT", finish_all=True)
    store = engine.store
    record = store.run(stopped)
    assert (record.status, record.reason) == ("interrupted", "SIGTERM, SIGINT")
    assert (store.run(finished).status, store.run(finished).reason) == ("completed", None)
    page = store.runs_page(10, status="interrupted")
    assert [r.id for r in page.runs] == [stopped]
    assert {r.id: r.reason for r in store.runs()}[stopped] == "SIGTERM, SIGINT"
    assert store.status_counts() == {"interrupted": 1, "completed": 1}
    engine.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_prune_keeps_the_newest_and_running_runs(tmp_path):
    db = tmp_path / "h.db"
    engine = _engine(db)
    ids = [engine.run([Task("t", fn=lambda: "x" * 10)]).id for _ in range(4)]
    engine.close()
    conn = sqlite3.connect(db, isolation_level=None)
    here = socket.gethostname()
    # Started long ago: one still running in a live process, one whose process is gone,
    # one on another host (whether its process lives cannot be told: it counts as running).
    for run_id, pid, host in (("live", os.getpid(), here), ("dead", _dead_pid(), here),
                              ("remote", 1, "elsewhere")):
        conn.execute("INSERT INTO runs(id, status, started, pid, host)"
                     " VALUES (?, 'running', 1.0, ?, ?)", (run_id, pid, host))
    conn.close()

    store = SqliteStore(db)
    assert isinstance(store, PrunableHistory)
    try:
        with pytest.raises(ValueError, match="older_than, keep or both"):
            store.prune()
        planned = store.prune(keep=2, dry_run=True)
        assert planned == ["dead", ids[0], ids[1]]  # oldest first
        assert {r.id for r in store.runs(10)} >= set(planned)  # a dry run deletes nothing
        assert store.prune(older_than=3600) == ["dead"]  # the others ended just now
        deleted = store.prune(older_than=0, keep=2, now=4e9)
        assert set(deleted) == {ids[0], ids[1]}
        assert {r.id for r in store.runs(10)} == {ids[2], ids[3], "live", "remote"}
        with sqlite3.connect(db) as check:
            for table in ("events", "results", "logs"):
                left = check.execute(
                    f"SELECT count(*) FROM {table} WHERE run_id IN (?, ?)", (ids[0], ids[1])
                ).fetchone()[0]
                assert left == 0, table
    finally:
        store.close()
    reader = SqliteStore(db, read_only=True)
    try:
        assert reader.prune(keep=0, dry_run=True) == [ids[2], ids[3]]
        with pytest.raises(StoreError, match="open read-only"):
            reader.prune(keep=0)
    finally:
        reader.close()


def test_vacuum_after_prune_gives_the_space_back(tmp_path):
    db = tmp_path / "t.db"
    engine = _engine(db)
    payload = "x" * 200_000  # stored with each run: the file grows by about this much a run
    for _ in range(5):
        assert engine.run([Task("big", fn=lambda: payload)], name="w").ok
    engine.close()
    store = SqliteStore(db)
    try:
        assert len(store.prune(0.0)) == 5
        before, after = store.vacuum()
        assert before > 1_000_000 > 200_000 > after
        assert db.stat().st_size == after
    finally:
        store.close()


def test_vacuum_waits_for_a_writer_then_names_the_lock(tmp_path):
    db = tmp_path / "t.db"
    store = SqliteStore(db, lock_timeout=0.2)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"not vacuumed: database .* is locked"):
            store.vacuum()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        store.close()
