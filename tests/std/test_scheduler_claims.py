"""Scheduled fires and manager runs claim their run ids in the store; a schedule job's
``max_active_runs`` holds across schedulers sharing a store (fake clock, a real SQLite file)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import ConfigError, FakeClock, Task, TaskManager, TaskScheduler, hookimpl
from taskloom_std.stores.claims import RunClaimedError

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


class Overlaps:
    def __init__(self) -> None:
        self.seen: list[tuple[str, datetime, int, str | None]] = []

    @hookimpl
    def taskloom_schedule_overlap(self, job: Any, scheduled_for: datetime, fired_at: datetime,
                                  running: int) -> None:
        self.seen.append((job.id, scheduled_for, running, job.skipped_by))


class Gate:
    """A body that says it started and waits to be let go."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.go = threading.Event()
        self.count = 0

    def __call__(self) -> int:
        self.count += 1
        self.started.release()
        self.go.wait(10)
        return self.count


def _claim_elsewhere(store: Any, run_id: str, workflow: str) -> BaseException | None:
    """Claim ``run_id`` on another thread (the thread holding a claim may take it again);
    the error, or None when granted (and released)."""
    out: list[BaseException | None] = []

    def claim() -> None:
        try:
            store.claim_run(run_id, workflow, on_conflict="error")()
            out.append(None)
        except RunClaimedError as exc:
            out.append(exc)

    worker = threading.Thread(target=claim)
    worker.start()
    worker.join(10)
    return out[0]


def _scheduler(clock: FakeClock, seen: Overlaps, **engine: Any) -> TaskScheduler:
    plugins = taskloom.load_plugins(plugins=[seen])
    return TaskScheduler(clock=clock, manager=TaskManager(plugins=plugins, clock=clock, **engine))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sqlite_pair(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[TaskScheduler, ...]]:
    """Two schedulers, each with its own engine and store, on one database."""
    seen = Overlaps()
    pair = tuple(_scheduler(clock, seen, store="sqlite",
                            store_options={"path": str(tmp_path / "s.db")}) for _ in range(2))
    yield (*pair, seen)  # type: ignore[misc]
    for sched in pair:
        sched.shutdown()
        sched.manager.shutdown()
        sched.engine.close()


def test_max_active_runs_skips_a_fire_of_another_scheduler_on_the_same_store(
        sqlite_pair: tuple[Any, ...], clock: FakeClock) -> None:
    first, second, seen = sqlite_pair
    gate = Gate()
    jobs = [s.schedule_recurring(Task("report", fn=gate), 60, id="report", max_active_runs=1)
            for s in (first, second)]
    clock.advance(60)
    assert first.run_pending(wait=False) == ["report"]
    assert gate.started.acquire(timeout=5)
    clock.advance(60)
    # The second scheduler's own count is 0 (max_instances is not what stops it): the run
    # of the first one, claimed in the database, is.
    assert jobs[1].running == 0
    assert second.run_pending(wait=False) == []
    assert seen.seen == [("report", T0 + timedelta(minutes=2), 1, "max_active_runs 1")]
    gate.go.set()
    first.stop()
    clock.advance(60)
    assert second.run_pending() == ["report"]
    assert gate.count == 2
    assert len(seen.seen) == 1


def test_run_pending_waits_for_a_place_instead_of_skipping(
        sqlite_pair: tuple[Any, ...], clock: FakeClock) -> None:
    first, second, seen = sqlite_pair
    gate = Gate()
    for s in (first, second):
        s.schedule_recurring(Task("report", fn=gate), 60, id="report", max_active_runs=1)
    clock.advance(60)
    assert first.run_pending(wait=False) == ["report"]
    assert gate.started.acquire(timeout=5)
    clock.advance(60)
    done: list[list[str]] = []
    waiter = threading.Thread(target=lambda: done.append(second.run_pending()))
    waiter.start()
    waiter.join(0.3)  # still waiting for the first scheduler's run to give its place up
    assert not done and gate.count == 1
    gate.go.set()
    waiter.join(10)
    assert done == [["report"]] and gate.count == 2
    assert seen.seen == []


def test_the_engines_max_active_runs_is_the_jobs_default(clock: FakeClock) -> None:
    seen = Overlaps()
    sched = _scheduler(clock, seen, config={"max_active_runs": 1})
    gate = Gate()
    try:
        # max_instances 2 would let a second run overlap; the engine's limit does not.
        job = sched.schedule_recurring(Task("solo", fn=gate), 60, max_instances=2)
        assert job.max_active_runs is None
        clock.advance(60)
        assert sched.run_pending(wait=False) == ["solo"]
        assert gate.started.acquire(timeout=5)
        clock.advance(60)
        assert sched.run_pending(wait=False) == []
        assert [(s[0], s[2], s[3]) for s in seen.seen] == [("solo", 1, "max_active_runs 1")]
    finally:
        gate.go.set()
        sched.shutdown()


def test_a_running_fire_holds_its_run_id_in_the_store(clock: FakeClock) -> None:
    sched = _scheduler(clock, Overlaps())
    gate = Gate()
    try:
        job = sched.schedule_recurring(Task("held", fn=gate), 60)
        clock.advance(60)
        sched.run_pending(wait=False)
        assert gate.started.acquire(timeout=5)
        run = job.task.run
        assert run is not None and run.name == "held"
        store = sched.engine.store
        assert f"run '{run.id}' is running" in str(_claim_elsewhere(store, run.id, "held"))
        gate.go.set()
        sched.stop()
        sched.manager.shutdown()  # closes the run, which releases its claim
        assert _claim_elsewhere(store, run.id, "held") is None
    finally:
        gate.go.set()
        sched.shutdown()


def test_manager_runs_claim_their_ids_and_honour_max_active_runs() -> None:
    manager = TaskManager(config={"max_active_runs": 1, "on_limit": "refuse"})
    gate = Gate()
    try:
        manager.submit_task(manager.create_task("first", fn=gate))
        assert gate.started.acquire(timeout=5)
        [run] = manager.runs
        assert f"run '{run.id}' is running" in str(
            _claim_elsewhere(manager.engine.store, run.id, "manager"))
        with pytest.raises(RunClaimedError, match="workflow 'manager' already has 1 active"):
            manager.execute_task(manager.create_task("second", fn=lambda: 2).id)
        # Another workflow name is another limit.
        assert manager.execute_workflow([Task("third", fn=lambda: 3)], name="other") == {
            "third": 3}
        gate.go.set()
        assert manager.wait_for_task("first", timeout=10) == 1
        manager.shutdown()
        assert manager.execute_task("second") == 2  # the place was given back
    finally:
        gate.go.set()
        manager.shutdown()


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_max_active_runs_is_named(clock: FakeClock, value: object) -> None:
    sched = _scheduler(clock, Overlaps())
    try:
        with pytest.raises(ConfigError, match=r"task 'x': max_active_runs must be >= 1"):
            sched.schedule_recurring(Task("x", fn=lambda: 1), 60, max_active_runs=value)
    finally:
        sched.shutdown()
