"""Schedule claims made many at a time: one statement per scheduler pass, and concurrent
claims and saves sharing one transaction; still exactly one winner per fire."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import psycopg

from taskloom import FakeClock, Task
from taskloom.api.manager import TaskManager
from taskloom_postgres import PostgresStore
from taskloom_postgres.schedule import PostgresScheduleState
from taskloom_std.scheduling.scheduler import TaskScheduler

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def _state(dsn: str) -> PostgresScheduleState:
    return PostgresScheduleState(psycopg.connect(dsn, autocommit=True))


def test_claim_and_save_wins_each_fire_once_and_saves_only_what_it_won(fresh_dsn):
    PostgresStore(fresh_dsn).close()  # the schema
    a, b = _state(fresh_dsn), _state(fresh_dsn)
    try:
        assert a.claim("j0", 5.0, "a")  # claimed before, one at a time
        fires = [(f"j{i}", 5.0, {"next_fire_time": 6.0, "by": "a"}) for i in range(50)]
        won_a = a.claim_and_save(fires, "a")
        won_b = b.claim_and_save([(job, t, {**s, "by": "b"}) for job, t, s in fires], "b")
        assert ("j0", 5.0) not in won_a  # the earlier single claim holds
        assert won_a == {(f"j{i}", 5.0) for i in range(1, 50)}
        assert won_b == set()
        assert a.load("j1") == {"next_fire_time": 6.0, "by": "a"}
        assert a.load("j0") is None  # lost its claim in the batch: nothing saved
        assert b.claim_and_save([], "b") == set()
        # The same fire asked twice in one call goes to one asker.
        twice = b.claim_and_save([("k", 1.0, {"n": 1}), ("k", 1.0, {"n": 2})], "b")
        assert twice == {("k", 1.0)}
    finally:
        a.close()
        b.close()


def test_concurrent_claims_and_saves_share_commits_and_never_double(fresh_dsn):
    PostgresStore(fresh_dsn).close()
    states = [_state(fresh_dsn), _state(fresh_dsn)]
    won: list[tuple[str, float]] = []
    lock = threading.Lock()

    def claimer(state: PostgresScheduleState, who: str) -> None:
        for t in range(40):
            state.save(who, {"at": t})
            if state.claim("job", float(t), who):
                with lock:
                    won.append(("job", float(t)))

    threads = [threading.Thread(target=claimer, args=(states[i % 2], f"w{i}"))
               for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(won) == [("job", float(t)) for t in range(40)]  # each once
        assert {states[0].load(f"w{i}")["at"] for i in range(8)} == {39}
        with psycopg.connect(fresh_dsn) as conn:
            rows = conn.execute("SELECT count(*) FROM schedule_claims").fetchone()
            saved = conn.execute("SELECT state FROM schedule_state WHERE job_id = 'w3'"
                                 ).fetchone()
        assert rows == (40,)
        assert json.loads(saved[0]) == {"at": 39}
    finally:
        for state in states:
            state.close()


def test_two_schedulers_sharing_the_database_fire_every_due_run_once(fresh_dsn):
    PostgresStore(fresh_dsn).close()
    clock = FakeClock(T0)
    ran: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        with lock:
            ran.append(name)

    schedulers, managers, states = [], [], []
    for _ in range(2):
        manager = TaskManager(clock=clock)
        state = _state(fresh_dsn)
        scheduler = TaskScheduler(clock=clock, manager=manager, state=state)
        for i in range(30):
            scheduler.add_job(Task(f"j{i}", fn=lambda i=i: work(f"j{i}")), "interval",
                              seconds=1, id=f"j{i}")
        schedulers.append(scheduler)
        managers.append(manager)
        states.append(state)
    try:
        fired = []
        for _ in range(3):
            clock.advance(1.0)
            for scheduler in schedulers:
                fired.extend(scheduler.run_pending())
        assert sorted(fired) == sorted(f"j{i}" for i in range(30) for _ in range(3))
        assert sorted(ran) == sorted(fired)
        saved = states[0].load("j7")
        assert saved is not None and saved["last_fire_time"] == (T0.timestamp() + 3.0)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown()
        for manager in managers:
            manager.shutdown()
        for state in states:
            state.close()
