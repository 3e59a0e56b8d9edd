"""LISTEN/NOTIFY: a store's listener wakes when another connection commits a run's records,
a schedule change or a claim's release, and not before the commit; a waiting step finds a
signal it missed while its listening connection was down."""

from __future__ import annotations

import threading
import time

import psycopg

from taskloom import Engine, Task, TaskState
from taskloom.api.signals import wait_for
from taskloom_postgres import PostgresStore
from taskloom_postgres.notify import CLAIMS, RUNS, SCHEDULES


def test_a_listener_wakes_when_another_connection_commits(fresh_dsn):
    store = PostgresStore(fresh_dsn)
    try:
        listener = store.listener()
        runs = listener.event(RUNS)
        assert listener.wait_ready(30)
        runs.clear()  # set once when the listener connected (it may have missed some)
        with psycopg.connect(fresh_dsn) as conn:
            conn.execute("SELECT pg_notify(%s, 'r1')", (RUNS,))
            assert not runs.is_set()  # sent only when the transaction commits
            conn.commit()
            assert runs.wait(30)
        runs.clear()
        with psycopg.connect(fresh_dsn) as conn:
            conn.execute("SELECT pg_notify(%s, 'r2')", (RUNS,))
            conn.rollback()  # a rolled-back change is never announced
            conn.execute("SELECT pg_notify(%s, 'r3')", (SCHEDULES,))
            conn.commit()
        schedules = listener.event(SCHEDULES)
        with psycopg.connect(fresh_dsn) as conn:
            conn.execute("SELECT pg_notify(%s, 'job')", (SCHEDULES,))
        assert schedules.wait(30) and not runs.is_set()
    finally:
        store.close()


def test_runs_and_schedule_changes_recorded_by_another_process_notify(fresh_dsn):
    watcher = PostgresStore(fresh_dsn)
    engine = Engine(store="postgres", store_options={"dsn": fresh_dsn})
    try:
        listener = watcher.listener()
        runs, schedules = listener.event(RUNS), listener.event(SCHEDULES)
        assert listener.wait_ready(30)
        runs.clear()
        schedules.clear()
        assert engine.run([Task("a", fn=lambda: 1)], run_id="seen").ok
        assert runs.wait(30)
        engine.store.schedule_state().save("job", {"next_fire_time": 5.0})
        assert schedules.wait(30)
    finally:
        engine.close()
        watcher.close()


def test_a_waiting_claimant_is_woken_by_the_release(fresh_dsn):
    holder, waiter = PostgresStore(fresh_dsn), PostgresStore(fresh_dsn)
    try:
        release = holder.claim_run("r1", "wf")
        claims = waiter.listener().event(CLAIMS)
        assert waiter.listener().wait_ready(30)
        claims.clear()
        got: list = []
        t = threading.Thread(target=lambda: got.append(waiter.claim_run("r1", "wf")))
        t.start()
        release()
        assert claims.wait(30)  # the release's notification reached the waiting store
        t.join(30)
        assert len(got) == 1
        got[0]()
    finally:
        holder.close()
        waiter.close()


def test_a_signal_missed_while_not_listening_is_found_when_listening_again(fresh_dsn):
    """A signal whose notification never reached the waiting process (here: a row written
    without one) is taken once its listening connection is made again: the process looks
    for the signals of its open waits then, and polls nowhere (``poll`` is an hour)."""
    engine = Engine(store="postgres", store_options={"dsn": fresh_dsn},
                    executors={"wait": {"poll": 3600}})
    try:
        run = engine.open_run(run_id="missed")
        run.add([wait_for("approve", "approval")])
        run.start()
        deadline = time.monotonic() + 30
        while not engine.store.waits("missed"):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        listener = engine.store.listener()
        assert listener.wait_ready(30)
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO signals(run_id, name, payload, sent, sent_by)"
                         " VALUES ('missed', 'approval', '\"yes\"', 0, 'test')")
            assert run.tasks["approve"].status is TaskState.RUNNING  # nothing told it
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN %%'")
        assert run.wait(30)
        summary = run.close()
        assert summary.ok and summary.results["approve"] == "yes"
    finally:
        engine.close()
