"""The TaskManager on runs: each call is a run, dependencies across runs, bounded memory."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from taskloom import Engine, Task, TaskloomError, TaskManager, TaskState, hookimpl


class Finished:
    def __init__(self) -> None:
        self.summaries: list[Any] = []

    @hookimpl
    def taskloom_run_finish(self, run: Any, summary: Any) -> None:
        self.summaries.append(summary)


def test_each_call_is_a_run_of_its_own() -> None:
    finished = Finished()
    with TaskManager(max_workers=2) as manager:
        manager.plugins.register(finished)
        a = manager.create_task("a", fn=lambda: 1)
        manager.execute_task(a.id)
        b = manager.create_task("b", fn=lambda a: a + 1, dependencies=["a"])
        assert manager.execute_workflow([b], name="nightly") == {"b": 2}
    assert [(s.name, s.trigger) for s in finished.summaries] == [
        ("manager", "api"), ("nightly", "api")]
    assert len({s.id for s in finished.summaries}) == 2


def test_a_dependency_completed_earlier_is_satisfied_from_its_result() -> None:
    calls: list[str] = []
    with TaskManager(max_workers=2) as manager:
        manager.create_task("up", fn=lambda: calls.append("up") or 10)
        manager.execute_task("up")
        manager.create_task("down", fn=lambda up: up + 1, dependencies=["up"])
        assert manager.execute_task("down") == 11
        assert calls == ["up"]


def test_a_dependency_that_did_not_complete_runs_in_the_new_run() -> None:
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time")
        return 5

    with TaskManager(max_workers=2) as manager:
        up = manager.create_task("up", fn=flaky)
        with pytest.raises(ValueError):
            manager.execute_task("up")
        manager.create_task("down", fn=lambda up: up * 2, dependencies=["up"])
        assert manager.execute_task("down") == 10
        assert up.status is TaskState.COMPLETED and len(attempts) == 2


def test_a_dependency_running_in_another_run_is_waited_for_not_run_twice() -> None:
    release = threading.Event()
    started = threading.Event()
    calls: list[str] = []

    def slow() -> str:
        calls.append("slow")
        started.set()
        release.wait(10)
        return "done"

    with TaskManager(max_workers=2) as manager:
        slow_task = manager.create_task("slow", fn=slow)
        manager.submit_task(slow_task)
        assert started.wait(10)
        manager.create_task("after", fn=lambda slow: slow + "!", dependencies=["slow"])
        result: list[Any] = []
        worker = threading.Thread(target=lambda: result.append(manager.execute_task("after")))
        worker.start()
        release.set()
        worker.join(10)
        assert result == ["done!"] and calls == ["slow"]


def test_finished_tasks_beyond_retention_are_forgotten() -> None:
    with TaskManager(max_workers=1, retention=2) as manager:
        for name in ("a", "b", "c"):
            manager.create_task(name, fn=lambda: 1)
            manager.execute_task(name)
        assert manager.get_task("a") is None
        assert {t.name for t in manager.list_tasks()} == {"b", "c"}
        manager.create_task("late", fn=lambda a: a, dependencies=["a"])
        with pytest.raises(TaskloomError, match="task 'late' depends on unknown task 'a'"):
            manager.execute_task("late")
        assert manager.runs == []


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_retention_must_be_a_count(bad: Any) -> None:
    with pytest.raises(TaskloomError, match="retention must be an integer >= 0"):
        TaskManager(retention=bad)


def test_the_sqlite_store_records_trigger_and_parent(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    engine = Engine(max_workers=2, store="sqlite", store_options={"path": str(db)})
    try:
        with TaskManager(engine=engine) as manager:
            manager.create_task("a", fn=lambda: 1)
            manager.execute_task("a")
        child = engine.open_run(name="child", trigger="api", parent_id="p-1")
        child.add([Task("x", fn=lambda: 2)])
        child.start()
        child.wait()
        assert child.close().ok
        failing = engine.run([Task("f", fn=lambda: 1 / 0)], run_id="r-1", trigger="manual")
        assert failing.status == "failed"
        resumed = engine.resume("r-1", [Task("f", fn=lambda: 1)], retry_failed=True)
        assert resumed.ok and resumed.trigger == "resume"
        assert engine.recorded(child.id).parent_id == "p-1"
    finally:
        engine.close()
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT workflow, trigger FROM runs").fetchall())
    assert rows == {"manager": "api", "child": "api", None: "resume"}


def test_an_unknown_trigger_is_refused() -> None:
    with pytest.raises(TaskloomError, match="run trigger 'cron' is not one of api, manual"):
        Engine().open_run(trigger="cron")


class SlowClose:
    """Holds the close of the run named ``x`` until ``gate`` opens; notes which thread
    closed each run."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.closed_by: dict[str, str] = {}
        self.closed = threading.Event()

    @hookimpl
    def taskloom_run_finish(self, run: Any, summary: Any) -> None:
        if run.name == "x":
            self.entered.set()
            assert self.gate.wait(10)
        self.closed_by[run.name] = threading.current_thread().name
        if run.name == "a":
            self.closed.set()


def test_runs_closed_when_done_close_together_never_on_a_starting_callers_thread() -> None:
    slow = SlowClose()
    with TaskManager(max_workers=2) as manager:
        manager.plugins.register(slow)
        x = manager.submit_run([Task("tx", fn=lambda: 1)], name="x")
        manager.close_when_done(x)
        assert slow.entered.wait(10)  # x's close is held on a closing thread
        a = manager.submit_run([Task("ta", fn=lambda: 2)], name="a")
        a.wait()
        manager.close_when_done(a)
        # Starting another run does not close the finished ``a`` here (its close could wait
        # for a store's commit); another closing thread closes it while x's is still held.
        b = manager.submit_run([Task("tb", fn=lambda: 3)], name="b")
        assert slow.closed.wait(10)
        assert slow.closed_by["a"] == "taskloom-manager-close"
        slow.gate.set()
        b.wait()
    assert slow.closed_by["x"] == "taskloom-manager-close"
    assert set(slow.closed_by) == {"x", "a", "b"}
