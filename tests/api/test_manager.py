import threading

import pytest

from taskloom import Task, TaskloomError, TaskManager, TaskNotFoundError


@pytest.fixture
def manager():
    with TaskManager(max_workers=4) as m:
        yield m


def test_documented_basic_task_creation(manager):
    task = manager.create_task(
        name="data_processing",
        description="Process incoming data files",
        priority=1,
        config={"input_path": "in", "output_path": "out", "batch_size": 100},
    )
    result = manager.execute_task(task.id)
    assert result is None and task.status == "completed"
    assert manager.get_task_status(task.id) == "completed"
    assert manager.get_task(task.id) is task and manager.get_task("data_processing") is task


def test_documented_dependencies_and_workflow(manager):
    order = []
    validation = manager.create_task(name="data_validation", description="Validate input data",
                                      priority=1, fn=lambda: order.append("v") or "valid")
    transformation = manager.create_task(
        name="data_transformation", description="Transform validated data", priority=2,
        dependencies=["data_validation"], fn=lambda data_validation: order.append("t") or 2)
    analysis = manager.create_task(
        name="data_analysis", description="Analyze transformed data", priority=3,
        dependencies=["data_transformation"], fn=lambda data_transformation: order.append("a"))
    results = manager.execute_workflow([validation, transformation, analysis])
    assert order == ["v", "t", "a"]
    assert results == {"data_validation": "valid", "data_transformation": 2, "data_analysis": None}
    assert [t.name for t in manager.list_tasks("completed")] == [
        "data_validation", "data_transformation", "data_analysis"]


def test_documented_subclass_with_dependencies(manager):
    class DataProcessingTask(Task):
        def execute(self):
            batch = self.config.get("batch_size", 50)
            return {"processed_count": batch, "status": "completed"}

    manager.create_task("data_validation")
    manager.create_task("schema_check")
    advanced = DataProcessingTask(
        name="advanced_data_processing", priority=1,
        dependencies=["data_validation", "schema_check"], config={"batch_size": 100})
    manager.submit_task(advanced)
    assert manager.wait_for_task(advanced.id, timeout=5) == {"processed_count": 100,
                                                               "status": "completed"}
    assert manager.get_task_status("schema_check") == "completed"


def test_execute_task_runs_unfinished_dependencies_once(manager):
    calls = []
    manager.create_task("a", fn=lambda: calls.append("a") or 1)
    manager.create_task("b", fn=lambda a: calls.append("b") or a + 1, dependencies=["a"])
    manager.create_task("c", fn=lambda a: calls.append("c") or a + 10, dependencies=["a"])
    assert manager.execute_task("b") == 2
    assert manager.execute_task("c") == 11  # 'a' already completed: not run again
    assert calls == ["a", "b", "c"]
    assert manager.get_task_result("c") == 11


def test_execute_task_raises_task_error(manager):
    t = manager.create_task("bad", fn=lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        manager.execute_task(t.id)
    assert manager.get_task_status(t.id) == "failed"


def test_retry_task_reruns_failed(manager):
    n = [0]

    def flaky():
        n[0] += 1
        if n[0] == 1:
            raise OSError("first time")
        return "second"

    t = manager.create_task("flaky", fn=flaky)
    with pytest.raises(OSError):
        manager.execute_task(t.id)
    manager.retry_task(t.id)
    assert manager.wait_for_task(t.id, timeout=5) == "second"
    with pytest.raises(TaskloomError, match="only failed or cancelled"):
        manager.retry_task(t.id)


def test_cancel_and_wait_timeout(manager):
    gate = threading.Event()
    t = manager.create_task("slow", fn=lambda: gate.wait(5))
    manager.submit_task(t)
    with pytest.raises(TimeoutError, match="still running"):
        manager.wait_for_task(t.id, timeout=0.05)
    manager.cancel_task(t.id)
    assert manager.get_task_status(t.id) == "cancelled"
    gate.set()


def test_lookup_errors(manager):
    with pytest.raises(TaskNotFoundError, match="no task with id or name 'nope'"):
        manager.get_task_status("nope")
    assert manager.get_task("nope") is None
    manager.create_task("x")
    with pytest.raises(TaskloomError, match="already exists"):
        manager.create_task("x")
    manager.create_task("needs", dependencies=["missing"])
    with pytest.raises(TaskloomError, match="task 'needs' depends on unknown task 'missing'"):
        manager.execute_task("needs")


def test_list_tasks_filters_by_status(manager):
    manager.create_task("a", fn=lambda: 1)
    manager.create_task("b")
    manager.execute_task("a")
    assert [t.name for t in manager.list_tasks(status="completed")] == ["a"]
    assert [t.name for t in manager.list_tasks(status="pending")] == ["b"]
    assert len(manager.get_all_tasks()) == 2


# -- re-runs in the manager's live run (each once a reproduced bug) ---------------------------

def test_rerunning_a_finished_dependency_keeps_a_waiting_dependent_waiting(manager):
    gate = threading.Event()
    manager.create_task("A", fn=lambda: "a")
    manager.create_task("B", fn=lambda: (gate.wait(5), "b")[1])
    manager.create_task("D", fn=lambda A, B: (A, B), dependencies=["A", "B"])
    manager.execute_task("A")
    manager.submit_task(manager.get_task("D"))  # D waits on B, which is running
    manager.execute_task("A")  # A runs again: D must still wait for B
    assert manager.get_task_status("D") == "waiting"
    gate.set()
    assert manager.wait_for_task("D", timeout=5) == ("a", "b")


def test_rerunning_a_failed_diamond_runs_dependencies_first(manager):
    n = [0]

    def flaky():
        n[0] += 1
        if n[0] == 1:
            raise RuntimeError("transient")
        return "b"

    manager.create_task("B", fn=flaky)
    manager.create_task("A", fn=lambda: "a", dependencies=["B"])
    manager.create_task("C", fn=lambda: "c", dependencies=["B"])
    manager.create_task("R", fn=lambda: "r", dependencies=["A", "C"])
    with pytest.raises(Exception, match="upstream task"):
        manager.execute_task("R")
    assert manager.execute_task("R") == "r"


def test_a_dependency_added_to_a_finished_task_is_waited_for(manager):
    a = manager.create_task("A", fn=lambda: "a")
    manager.execute_task("A")
    manager.create_task("X", fn=lambda: "x")
    a.add_dependency("X")
    manager.submit_task(a)
    assert manager.wait_for_task("A", timeout=5) == "a"
    assert manager.get_task_status("X") == "completed"


def test_retry_of_an_upstream_failure_runs_the_upstream_again(manager):
    n = [0]

    def up():
        n[0] += 1
        if n[0] == 1:
            raise RuntimeError("boom")
        return "up"

    manager.create_task("up", fn=up)
    manager.create_task("down", fn=lambda up: f"down({up})", dependencies=["up"])
    with pytest.raises(Exception, match="upstream task 'up' failed"):
        manager.execute_task("down")
    manager.retry_task("down")
    assert manager.wait_for_task("down", timeout=5) == "down(up)"


def test_a_task_is_retried_in_a_new_run_not_inside_its_open_run():
    from taskloom import Engine

    engine = Engine()
    run = engine.open_run()
    up = Task("up", fn=lambda: 1 / 0)
    run.add([up])
    run.start()
    run.wait(5)
    with pytest.raises(TaskloomError, match="task 'up' is in the open run .*new run"):
        up.retry()
    run.close()
    up.retry()
    assert up.status == "retrying"
    up.fn = lambda: 1
    assert engine.run([up]).ok and up.result == 1


def test_a_new_task_can_depend_on_one_completed_before_shutdown():
    m = TaskManager()
    m.create_task("A", fn=lambda: "a")
    m.execute_task("A")
    m.shutdown()
    m.create_task("D", fn=lambda A: A + "!", dependencies=["A"])
    assert m.execute_task("D") == "a!"
    m.shutdown()


def test_retry_of_a_task_cancelled_before_it_ran(manager):
    t = manager.create_task("A", fn=lambda: 1)
    manager.cancel_task(t.id)
    manager.retry_task(t.id)
    assert manager.wait_for_task(t.id, timeout=5) == 1


def test_waiting_on_a_skipped_task_says_it_was_not_run(manager):
    manager.create_task("ok", fn=lambda: 1)
    manager.create_task("onf", dependencies=["ok"], trigger_rule="one_failed")
    with pytest.raises(TaskloomError, match="task 'onf' ended skipped \\(not run\\)"):
        manager.execute_task("onf")
