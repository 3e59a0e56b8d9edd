import asyncio
import os
from datetime import datetime, timezone

import pytest

from taskloom import Engine, Task, TaskloomError


def test_documented_constructor_and_properties():
    t = Task("data_processing", "Process incoming data files", priority=2,
             dependencies=["a"], config={"batch_size": 100})
    assert (t.name, t.description, t.priority) == ("data_processing", "Process incoming data files", 2)
    assert t.dependencies == ["a"] and t.config == {"batch_size": 100}
    assert t.status == "pending" and t.get_status() == "pending"
    assert t.result is None and t.error is None and t.attempts == 0
    assert isinstance(t.id, str) and len(t.id) == 32 and t.id == t.id
    assert t.created_at.tzinfo is timezone.utc
    assert t.started_at is None and t.completed_at is None and t.duration is None


def test_ids_are_unique():
    assert len({Task("x").id for _ in range(1000)}) == 1000


def test_ids_are_version_4_uuids():
    import uuid

    for _ in range(100):
        parsed = uuid.UUID(Task("x").id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_makes_ids_of_its_own():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(Task("x").id for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    mine = {Task("x").id for _ in range(5)}
    with os.fdopen(read) as f:
        theirs = set(f.read().split())
    os.waitpid(pid, 0)
    assert len(theirs) == 5 and not mine & theirs


@pytest.mark.parametrize("bad", [0, 11, -1, 1.5, "1", True, None])
def test_bad_priority_names_the_task(bad):
    with pytest.raises(ValueError, match="task 'job': priority must be an integer from 1"):
        Task("job", priority=bad)


def test_bad_name_and_trigger_rule():
    with pytest.raises(ValueError):
        Task("")
    with pytest.raises(ValueError, match="task 'x': unknown trigger_rule 'sometimes'"):
        Task("x", trigger_rule="sometimes")
    with pytest.raises(TypeError, match="task 'x': fn must be callable"):
        Task("x", fn=42)


def test_no_body_completes_with_none():
    s = Engine().run([Task("noop")])
    assert s.ok and s.results == {"noop": None}


def test_add_and_remove_dependency():
    t = Task("b")
    t.add_dependency("a")
    t.add_dependency("a")
    assert t.dependencies == ["a"]
    t.remove_dependency("a")
    assert t.dependencies == []
    with pytest.raises(ValueError, match="has no dependency 'zz'"):
        t.remove_dependency("zz")
    with pytest.raises(ValueError, match="cannot depend on itself"):
        t.add_dependency("b")


def test_subclass_overriding_execute():
    class DataProcessingTask(Task):
        def execute(self):
            return {"processed_count": self.config["batch_size"]}

    t = DataProcessingTask("p", config={"batch_size": 7})
    s = Engine().run([t])
    assert s.ok and t.result == {"processed_count": 7} and t.get_result() == t.result


def test_execute_directly_runs_body_sync_and_async():
    async def coro():
        await asyncio.sleep(0)
        return 5

    assert Task("a", fn=lambda: 3).execute() == 3
    assert Task("b", fn=coro).execute() == 5
    assert Task("c").execute() is None


def test_timestamps_and_duration_after_run():
    t = Task("t", fn=lambda: 1)
    Engine().run([t])
    assert t.started_at <= t.completed_at
    assert isinstance(t.completed_at, datetime)
    assert t.get_duration() is not None and t.get_duration() >= 0


def test_cancel_outside_a_run_and_retry():
    t = Task("t")
    t.cancel()
    assert t.status == "cancelled"
    t2 = Task("t2", fn=lambda: 1 / 0)
    Engine().run([t2])
    assert t2.status == "failed" and t2.error_type == "ZeroDivisionError"
    t2._run = None
    t2.retry()
    assert t2.status == "retrying"


def test_dependencies_fixed_while_in_live_run():
    import threading

    gate = threading.Event()
    engine = Engine(max_workers=1)
    run = engine.open_run()
    t = Task("t", fn=gate.wait)
    run.add([t])
    run.start()
    with pytest.raises(TaskloomError, match="live run"):
        t.add_dependency("x")
    gate.set()
    run.wait()
    run.close()
