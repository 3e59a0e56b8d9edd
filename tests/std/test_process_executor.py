"""The process executor: real worker processes, pickling errors, crashes, hard timeouts."""

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
    TaskState,
    TaskTimeout,
    load_plugins,
)
from taskloom.testing import wait_until
from taskloom_std.executors.process import ProcessPicklingError, WorkerCrashed


# Bodies live at module level so the worker processes can import them.
def square(x):
    return x * x


def base():
    return 7


def pid():
    return os.getpid()


async def async_double(x):
    await asyncio.sleep(0)
    return 2 * x


def crash():
    os._exit(3)


def unpicklable_result():
    return threading.Lock()


class Custom(Exception):
    pass


def raise_custom():
    raise Custom("from the worker")


def park(path):
    """Record this process's id in ``path`` and block until killed."""
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    threading.Event().wait(120)
    return "not killed"


@pytest.fixture(scope="module")
def engine():
    return Engine(executor="process", max_workers=2)


def test_runs_bodies_in_other_processes_with_dependency_results(engine):
    s = engine.run([
        Task("x", fn=base),
        Task("sq", fn=square, dependencies=["x"]),
        Task("dbl", fn=async_double, dependencies=["x"]),
        Task("pid", fn=pid),
    ])
    assert s.ok, s.errors
    assert s.results["sq"] == 49 and s.results["dbl"] == 14
    assert s.results["pid"] != os.getpid()


def test_unpicklable_work_fails_with_an_error_naming_the_task(engine):
    s = engine.run([
        Task("lam", fn=lambda: 1),
        Task("res", fn=unpicklable_result),
        Task("fine", fn=base),
    ])
    lam, res, fine = s.tasks
    assert isinstance(lam.exception, ProcessPicklingError)
    assert "task 'lam'" in lam.error and "cannot be pickled" in lam.error
    assert isinstance(res.exception, ProcessPicklingError)
    assert "task 'res': its result cannot be pickled" in res.error
    assert fine.result == 7


def test_worker_exceptions_keep_their_type_and_remote_traceback(engine):
    s = engine.run([Task("boom", fn=raise_custom)])
    err = s.tasks[0].exception
    assert isinstance(err, Custom) and str(err) == "from the worker"
    assert any("in worker process" in note for note in err.__notes__)


def test_a_crashed_worker_fails_only_its_task():
    engine = Engine(executor="process", max_workers=1)
    s = engine.run([
        Task("a", fn=pid),
        Task("crash", fn=crash, dependencies=["a"]),
        Task("b", fn=pid, dependencies=["a"], priority=2),
    ])
    a, crashed, b = s.tasks
    assert isinstance(crashed.exception, WorkerCrashed)
    assert "task 'crash'" in crashed.error and "exit code 3" in crashed.error
    assert a.status is TaskState.COMPLETED and b.status is TaskState.COMPLETED
    assert a.result != b.result  # the slot replaced its dead process


@pytest.mark.parametrize(("timeout", "disable"), [
    ({"hard": 30}, ()),
    (30, ()),
], ids=["hard", "soft"])
def test_timeout_kills_and_replaces_the_worker(tmp_path, timeout, disable):
    clock = FakeClock()
    engine = Engine(executor="process", max_workers=1, clock=clock,
                    plugins=load_plugins(disable=disable))
    marker = tmp_path / "pid"
    path_task = Task("path", fn=_path_of(marker))
    stuck = Task("stuck", fn=park, dependencies=["path"], timeout=timeout)
    after = Task("after", fn=pid, dependencies=["stuck"], trigger_rule="all_done")
    run = engine.open_run()
    run.add([path_task, stuck, after])
    run.start()
    wait_until(lambda: marker.exists() and marker.read_text())
    worker = int(marker.read_text())
    proc = psutil.Process(worker)
    clock.advance(29)
    assert stuck.status is TaskState.RUNNING
    clock.advance(1)
    assert run.wait(20)
    summary = run.close()
    assert isinstance(stuck.exception, TaskTimeout) and "after 30s" in stuck.error
    proc.wait(10)  # returns once the process is gone; raises TimeoutExpired if it lives
    assert not psutil.pid_exists(worker) or proc.status() == psutil.STATUS_ZOMBIE
    assert summary.results["after"] != worker  # a fresh worker ran the next task


class _path_of:
    """A picklable body returning a fixed path."""

    def __init__(self, path):
        self.path = str(path)

    def __call__(self):
        return self.path


def test_cancel_terminates_the_worker(tmp_path):
    engine = Engine(executor="process", max_workers=1)
    marker = tmp_path / "pid"
    task = Task("stuck", fn=_Park(marker))
    run = engine.open_run()
    run.add([task])
    run.start()
    wait_until(lambda: marker.exists() and marker.read_text())
    worker = psutil.Process(int(marker.read_text()))
    task.cancel()
    assert task.status is TaskState.CANCELLED
    assert isinstance(task.exception, TaskCancelled)
    worker.wait(10)  # returns once the process is gone
    assert not worker.is_running()
    run.close()


class _Park:
    def __init__(self, path):
        self.path = str(path)

    def __call__(self):
        return park(self.path)


def test_per_task_override_from_a_thread_engine():
    s = Engine().run([Task("here", fn=os.getpid), Task("there", fn=pid, executor="process")])
    assert s.ok and s.results["here"] == os.getpid() != s.results["there"]


def test_context_is_refused_with_a_clear_error(engine):
    s = engine.run([Task("ctx", fn=_WantsContext())])
    assert isinstance(s.tasks[0].exception, ProcessPicklingError)
    assert "task 'ctx'" in s.tasks[0].error and "'context'" in s.tasks[0].error


class _WantsContext:
    def __call__(self, context):
        return context


def test_bad_start_method_is_refused():
    with pytest.raises(Exception, match="context must be 'forkserver' or 'spawn'"):
        Engine(executor="process", executor_options={"context": "fork"})
