"""Mapping on the TaskManager path: instances per element in the manager's runs, the mapped
name standing for its gather task, dependencies across calls, failures and retries."""

from __future__ import annotations

import threading

import pytest

from taskloom import Task, TaskState
from taskloom.api.manager import TaskManager
from taskloom.api.mapping import FailedElement, Map, MappedTask, map_task
from taskloom.kernel.errors import TaskloomError


def test_execute_workflow_maps_and_gathers_in_element_order():
    with TaskManager(max_workers=1) as manager:  # one worker: no instance waits on another
        results = manager.execute_workflow([
            Task("files", fn=lambda: ["a", "b", "c"]),
            map_task(Task("load", fn=lambda path: path.upper()), "files", as_="path"),
            Task("report", fn=lambda load: "+".join(load), dependencies=["load"]),
        ])
        assert results == {"files": ["a", "b", "c"], "load": ["A", "B", "C"],
                           "report": "A+B+C"}
        assert manager.get_task_status("load") == "completed"
        assert manager.get_task_result("load") == ["A", "B", "C"]
        assert manager.get_task("load[1]").result == "B"
        assert manager.get_task("load[1]").status is TaskState.COMPLETED


def test_execute_task_reuses_a_completed_source_and_names_instances_by_key():
    calls: list[str] = []
    with TaskManager(max_workers=4) as manager:
        manager.create_task("users", fn=lambda: calls.append("users") or [{"id": "ann"},
                                                                          {"id": "bob"}])
        assert manager.execute_task("users") == [{"id": "ann"}, {"id": "bob"}]
        greet = MappedTask("greet", fn=lambda user: f"hi {user['id']}",
                           map=Map("users", "user", key="id"), dependencies=["users"])
        manager.add_task(greet)
        assert manager.execute_task("greet") == ["hi ann", "hi bob"]
        assert calls == ["users"]  # the completed source was not run again
        assert manager.get_task("greet[bob]").result == "hi bob"
        # Executed again: mapped afresh over the same recorded source.
        assert manager.execute_task("greet") == ["hi ann", "hi bob"]
        assert calls == ["users"]


def test_submit_and_wait_for_a_mapped_task_with_failures_then_retry_it():
    broken = {2}
    lock = threading.Lock()

    def square(n: int) -> int:
        with lock:
            if n in broken:
                raise ValueError(f"broken {n}")
        return n * n

    seen: list[object] = []
    with TaskManager(max_workers=4) as manager:
        manager.create_task("numbers", fn=lambda: [1, 2, 3])
        manager.add_task(map_task(Task("square", fn=square), "numbers", as_="n"))
        manager.create_task("keep", fn=lambda square: seen.append(square) or len(square),
                            dependencies=["square"], trigger_rule="all_done")
        task_id = manager.submit_task(manager.get_task("keep"))
        assert manager.wait_for_task(task_id, timeout=30) == 3
        with pytest.raises(TaskloomError, match="1 of 3 elements of 'square' did not "
                                                "complete: square\\[1\\] failed"):
            manager.wait_for_task("square", timeout=30)
        assert manager.get_task_status("square") == "failed"
        (got,) = seen
        assert isinstance(got, list) and got[0] == 1 and got[2] == 9
        assert got[1] == FailedElement("square[1]", 1, "failed", "broken 2")
        broken.clear()
        manager.retry_task("square")
        assert manager.wait_for_task("square", timeout=30) == [1, 4, 9]


def test_a_mapped_task_never_submitted_and_an_unknown_source():
    with TaskManager(max_workers=2) as manager:
        manager.add_task(map_task(Task("m", fn=lambda x: x), "x"))
        with pytest.raises(TaskloomError, match="never submitted"):
            manager.wait_for_task("m")
        with pytest.raises(TaskloomError, match="neither a task of the workflow nor a run "
                                                "parameter"):
            manager.execute_task("m")


def test_a_thousand_elements_with_failures_and_retries_on_a_manager():
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def double(n: int) -> int:
        with lock:
            attempts[n] = attempts.get(n, 0) + 1
            tries = attempts[n]
        if n % 100 == 7 and tries < 2:
            raise RuntimeError(f"flaky {n}")  # retried once, then completes
        if n % 400 == 5:
            raise ValueError(f"broken {n}")  # fails after its retry
        return 2 * n

    with TaskManager(max_workers=8) as manager:
        results = manager.execute_workflow([
            Task("numbers", fn=lambda: list(range(1000))),
            map_task(Task("double", fn=double, retry={"max_retries": 1, "base_delay": 0}),
                     "numbers", as_="n"),
            Task("kept", fn=lambda double: [r for r in double if r], dependencies=["double"],
                 trigger_rule="all_done"),
        ])
        assert manager.get_task_status("double") == "failed"
        assert "3 of 1000 elements of 'double' did not complete" in manager.get_task(
            "double").error
        assert manager.get_task("double[107]").attempts == 2
        assert manager.get_task("double[405]").status is TaskState.FAILED
    broken = {5, 405, 805}
    assert results["kept"] == [2 * n for n in range(1, 1000) if n not in broken]
    assert "double" not in results
