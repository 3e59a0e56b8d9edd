"""What a run record keeps so that a resume runs it faithfully, on every store: its
parameters (typed again), the ``--set``/``TASKLOOM_*`` overrides and store settings it started
with; and the fires a scheduler skipped (misfires and overlaps), which the dashboard's
Schedules page lists, the newest per job only."""

from __future__ import annotations

import datetime as dt
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from taskloom import FakeClock, Task, TaskManager, TaskScheduler
from taskloom_std.stores.schema import SKIPS_KEPT


def test_a_resume_runs_with_the_recorded_parameters(store_kind):
    seen: list[dict[str, Any]] = []

    def body(context: Any) -> Any:
        seen.append(dict(context.params))
        if len(seen) == 1:
            raise RuntimeError("first time")
        return context.params["day"]

    params = {"day": dt.date(2026, 12, 1), "at": dt.datetime(2026, 12, 1, 8, 30), "n": 3,
              "files": ["a", "b"], "dry": False}
    engine = store_kind.engine()
    assert not engine.run([Task("t", fn=body)], params=params, run_id="p1").ok
    if store_kind.persistent:  # resumed by another process
        engine.close()
        engine = store_kind.engine()
        assert engine.store.recorded_params("p1") == params
    again = engine.resume("p1", [Task("t", fn=body)], retry_failed=True)
    assert again.ok and again.results["t"] == dt.date(2026, 12, 1)
    assert seen == [params, params]
    assert engine.store.recorded_params("nope") == {}


def test_the_overrides_and_settings_a_run_started_with_are_recorded(persistent_kind):
    engine = persistent_kind.engine(durability="safe")
    settings = engine.store.settings
    assert settings["durability"] == "safe"
    assert not {"path", "dsn", "config_path", "overrides"} & set(settings)
    engine.store.overrides = {"taskloom.store_options.durability": "safe",
                              "tasks.a.config.tag": "from-set", "taskloom.max_workers": 3}
    assert engine.run([Task("a", fn=lambda: 1)], run_id="o1",
                      params={"day": dt.date(2026, 12, 1)}).ok
    engine.store.overrides = {}
    assert engine.run([Task("a", fn=lambda: 1)], run_id="o2").ok
    reader = persistent_kind.open()
    assert reader.recorded_overrides("o1") == {
        "taskloom.store_options.durability": "safe", "tasks.a.config.tag": "from-set",
        "taskloom.max_workers": 3,
        "params.day": {"type": "date", "default": "2026-12-01"}}
    assert reader.recorded_overrides("o2") == {}
    assert reader.recorded_overrides("nope") == {}
    # A resume that records no overrides of its own keeps the ones the run started with.
    assert persistent_kind.engine().resume("o1", [Task("a", fn=lambda: 1)]).ok
    assert persistent_kind.open().recorded_overrides("o1")["tasks.a.config.tag"] == "from-set"


T0 = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def skip_state(store_kind: Any) -> Any:
    state = store_kind.open().schedule_state()
    if not callable(getattr(state, "record_skip", None)):
        pytest.skip(f"store {store_kind.name!r} keeps no skipped fires")
    return state


def test_a_misfire_is_recorded_with_its_due_time_and_lateness(store_kind, skip_state):
    clock = FakeClock(T0)
    engine = store_kind.engine()
    manager = TaskManager(engine=engine, clock=clock)
    scheduler = TaskScheduler(clock=clock, manager=manager)
    try:
        scheduler.add_task(Task("late", fn=lambda: 1), clock.now() + timedelta(seconds=10),
                           misfire_grace_time=5)
        clock.advance(30)
        assert scheduler.run_pending() == []
    finally:
        scheduler.shutdown()
        manager.shutdown()
    [skip] = skip_state.skips("late")  # seen through another store on the database
    assert skip["kind"] == "misfire"
    assert skip["scheduled_for"] == (T0 + timedelta(seconds=10)).timestamp()
    assert skip["detail"] == "20.000s late (misfire grace 5s)"
    assert isinstance(skip["recorded"], float)
    assert skip_state.skips("other") == []


def test_only_the_newest_skips_of_a_job_are_kept(skip_state):
    for k in range(SKIPS_KEPT + 5):
        skip_state.record_skip("busy", "overlap", 1000.0 + k, None)
    skip_state.record_skip("quiet", "misfire", 5.0, "late")
    kept = skip_state.skips("busy", limit=SKIPS_KEPT + 10)
    assert len(kept) == SKIPS_KEPT
    assert kept[0]["scheduled_for"] == 1000.0 + SKIPS_KEPT + 4
    assert kept[-1]["scheduled_for"] == 1005.0
    assert [(s["kind"], s["detail"]) for s in skip_state.skips("quiet")] == [
        ("misfire", "late")]
    assert len(skip_state.skips("busy", limit=3)) == 3
