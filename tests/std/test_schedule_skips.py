"""Skipped fires kept in the SQLite store: a scheduler records each misfire and overlap in
``schedule_skips`` (the dashboard's Schedules page lists them), the newest per job only."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from taskloom import Engine, FakeClock, Task, TaskManager, TaskScheduler
from taskloom_std.stores.schema import SKIPS_KEPT

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TaskScheduler, FakeClock, Any]]:
    clock = FakeClock(T0)
    engine = Engine(max_workers=2, store="sqlite",
                    store_options={"path": str(tmp_path / "s.db")})
    manager = TaskManager(engine=engine, clock=clock)
    scheduler = TaskScheduler(clock=clock, manager=manager)
    yield scheduler, clock, engine.store.schedule_state()
    scheduler.shutdown()
    manager.shutdown()
    engine.close()


def test_a_misfire_is_recorded_with_its_due_time_and_lateness(setup):
    scheduler, clock, state = setup
    scheduler.add_task(Task("late", fn=lambda: 1), clock.now() + timedelta(seconds=10),
                       misfire_grace_time=5)
    clock.advance(30)
    assert scheduler.run_pending() == []
    [skip] = state.skips("late")
    assert skip["kind"] == "misfire"
    assert skip["scheduled_for"] == (T0 + timedelta(seconds=10)).timestamp()
    assert skip["detail"] == "20.000s late (misfire grace 5s)"
    assert state.skips("other") == []


def test_overlaps_are_recorded_with_the_runs_still_going(setup):
    scheduler, clock, state = setup
    release = threading.Event()
    started = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    scheduler.schedule_recurring(Task("slow", fn=slow), 60, max_instances=1)
    try:
        fired = []
        for _ in range(3):
            clock.advance(60)
            fired += scheduler.run_pending(wait=False)
        assert len(fired) == 1 and started.wait(5)
    finally:
        release.set()
    skips = state.skips("slow")
    assert [s["kind"] for s in skips] == ["overlap", "overlap"]
    assert [s["scheduled_for"] for s in skips] == [  # newest first
        (T0 + timedelta(seconds=180)).timestamp(), (T0 + timedelta(seconds=120)).timestamp()]
    assert all(s["detail"] == "1 run(s) still going (max_instances 1)" for s in skips)


def test_only_the_newest_skips_of_a_job_are_kept(setup):
    _, _, state = setup
    for k in range(SKIPS_KEPT + 5):
        state.record_skip("busy", "overlap", 1000.0 + k, None)
    state.record_skip("quiet", "misfire", 5.0, "late")
    kept = state.skips("busy", limit=SKIPS_KEPT + 10)
    assert len(kept) == SKIPS_KEPT
    assert kept[0]["scheduled_for"] == 1000.0 + SKIPS_KEPT + 4
    assert kept[-1]["scheduled_for"] == 1005.0
    assert [s["kind"] for s in state.skips("quiet")] == ["misfire"]
    assert len(state.skips("busy", limit=3)) == 3


def test_a_database_of_schema_7_gets_the_skips_table(tmp_path):
    db = tmp_path / "old.db"
    Engine(max_workers=1, store="sqlite", store_options={"path": str(db)}).close()
    conn = sqlite3.connect(db, isolation_level=None)
    for later in ("schedule_skips", "signals", "waits"):  # made by migrations 8 and 9
        conn.execute(f"DROP TABLE {later}")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(db)})
    try:
        state = engine.store.schedule_state()
        state.record_skip("job", "misfire", 1.0, "late")
        assert [s["kind"] for s in state.skips("job")] == ["misfire"]
    finally:
        engine.close()
