"""Cancelling running tasks and runs, on every executor."""

import asyncio
import os
import threading

import psutil
import pytest

from taskloom import (
    Engine,
    FakeClock,
    Task,
    TaskCancelled,
    TaskManager,
    TaskState,
    hookimpl,
    load_plugins,
)
from taskloom.testing import wait_until


class Overruns:
    def __init__(self):
        self.event = threading.Event()

    @hookimpl
    def taskloom_task_overrun(self, task, attempt, run):
        self.event.set()


def test_cancelling_a_running_thread_task_sets_its_token():
    overruns = Overruns()
    engine = Engine(plugins=load_plugins(plugins=[overruns]))
    started = threading.Event()
    saw = {}

    def body(context):
        started.set()
        saw["cancelled"] = context.token.wait(10)
        saw["reason"] = context.token.reason
        return "ignored"

    task = Task("long", fn=body)
    after = Task("after", fn=lambda long: long, dependencies=["long"])
    run = engine.open_run()
    run.add([task, after])
    run.start()
    assert started.wait(5)
    task.cancel()
    assert task.status is TaskState.CANCELLED  # at once, not when the body returns
    assert isinstance(task.exception, TaskCancelled)
    assert overruns.event.wait(5)
    assert saw == {"cancelled": True, "reason": "cancelled"}
    assert run.wait(5)
    run.close()
    assert after.status is TaskState.CANCELLED and task.result is None


def test_manager_cancel_task_by_id():
    manager = TaskManager(max_workers=2)
    started = threading.Event()

    def body(context):
        started.set()
        context.token.wait(10)

    task = manager.create_task("job", fn=body)
    manager.submit_task(task)
    assert started.wait(5)
    manager.cancel_task(task.id)
    assert manager.get_task_status(task.id) == "cancelled"
    with pytest.raises(TaskCancelled):
        manager.wait_for_task(task.id, timeout=5)
    manager.shutdown()


def test_cancelling_a_run_stops_new_starts_at_once():
    engine = Engine(max_workers=1)
    started = threading.Event()
    ran = []

    def blocker(context):
        started.set()
        context.token.wait(10)

    tasks = [Task("first", fn=blocker)] + [
        Task(f"later{i}", fn=lambda i=i: ran.append(i), priority=2) for i in range(5)
    ]
    run = engine.open_run()
    run.add(tasks)
    run.start()
    assert started.wait(5)
    run.cancel()
    assert all(t.status is TaskState.CANCELLED for t in tasks)
    assert run.wait(5)
    assert run.close().status == "cancelled"
    assert ran == []


def test_cancelling_a_task_waiting_for_its_retry():
    clock = FakeClock()
    engine = Engine(clock=clock)
    calls = []

    def body():
        calls.append(1)
        raise ConnectionError("down")

    task = Task("t", fn=body, retry={"max_retries": 3, "backoff": "fixed", "base_delay": 30})
    run = engine.open_run()
    run.add([task])
    run.start()
    wait_until(lambda: task.status is TaskState.RETRYING)
    task.cancel()
    assert task.status is TaskState.CANCELLED
    clock.advance(30)  # the retry timer fires into a cancelled task: nothing runs
    assert run.wait(5)
    run.close()
    assert calls == [1] and task.status is TaskState.CANCELLED


async def _forever(flag):
    flag.set()
    await asyncio.Event().wait()


def _park(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    threading.Event().wait(120)


class _ParkAt:
    def __init__(self, path):
        self.path = str(path)

    def __call__(self):
        _park(self.path)


def test_cancel_reaches_each_executor(tmp_path):
    """Threads get the token, coroutines are cancelled, processes are terminated."""
    engine = Engine(max_workers=4)
    thread_started = threading.Event()
    co_started = threading.Event()
    marker = tmp_path / "pid"

    def thread_body(context):
        thread_started.set()
        context.token.wait(10)

    tasks = [
        Task("thread", fn=thread_body),
        Task("coroutine", fn=lambda: _forever(co_started), executor="asyncio"),
        Task("process", fn=_ParkAt(marker), executor="process"),
    ]
    run = engine.open_run()
    run.add(tasks)
    run.start()
    assert thread_started.wait(5) and co_started.wait(5)
    wait_until(lambda: marker.exists() and marker.read_text())
    worker = psutil.Process(int(marker.read_text()))
    run.cancel()
    assert all(t.status is TaskState.CANCELLED for t in tasks)
    worker.wait(10)
    assert not worker.is_running()
    assert run.wait(5)
    run.close()
