"""The asyncio executor: native coroutines on one loop, thousands in flight at once."""

import asyncio
import threading

from taskloom import Engine, Task, TaskState, hookimpl, load_plugins


def test_thousands_of_coroutines_are_in_flight_together():
    n = 2000
    state = {"arrived": 0, "loops": set()}
    gate = {}

    async def body():
        loop = asyncio.get_running_loop()
        state["loops"].add(loop)
        if "event" not in gate:
            gate["event"] = asyncio.Event()
        state["arrived"] += 1
        if state["arrived"] == n:
            gate["event"].set()
        # Nobody gets past this line until all n coroutines are waiting at once.
        await gate["event"].wait()
        return state["arrived"]

    engine = Engine(executor="asyncio", max_workers=n)
    s = engine.run([Task(f"t{i}", fn=body) for i in range(n)], timeout=30)
    assert s.ok and len(s.results) == n
    assert set(s.results.values()) == {n} and len(state["loops"]) == 1


def test_default_cap_is_a_thousand_coroutines():
    assert Engine(executor="asyncio").create_executor(None).max_workers == 1000


def test_results_context_and_sync_bodies():
    loop_thread = {}

    async def first():
        loop_thread["id"] = threading.get_ident()
        return 20

    async def second(first, context):
        await asyncio.sleep(0)
        return first + context.attempt.number

    def sync_body(second):
        loop_thread["sync"] = threading.get_ident()
        return second * 2

    def returns_awaitable():
        return first()

    s = Engine(executor="asyncio").run([
        Task("first", fn=first),
        Task("second", fn=second, dependencies=["first"]),
        Task("third", fn=sync_body, dependencies=["second"]),
        Task("fourth", fn=returns_awaitable),
    ])
    assert s.results == {"first": 20, "second": 21, "third": 42, "fourth": 20}
    assert loop_thread["sync"] != loop_thread["id"]  # sync bodies never block the loop


def test_errors_and_retries_on_the_loop():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("again")
        return "ok"

    s = Engine(executor="asyncio").run([
        Task("t", fn=flaky, retry={"max_retries": 3, "base_delay": 0})
    ])
    assert s.results == {"t": "ok"} and s.tasks[0].attempts == 3


def test_cancel_cancels_the_coroutine():
    started = threading.Event()
    cancelled = threading.Event()

    async def forever():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    engine = Engine(executor="asyncio")
    task = Task("forever", fn=forever)
    run = engine.open_run()
    run.add([task])
    run.start()
    assert started.wait(5)
    task.cancel()
    assert task.status is TaskState.CANCELLED
    assert cancelled.wait(5)
    run.close()


def test_per_task_override_from_a_thread_engine():
    async def where():
        return threading.current_thread().name

    s = Engine().run([Task("co", fn=where, executor="asyncio")])
    assert s.results == {"co": "taskloom-asyncio"}


class Tagging:
    """A wrapper without ``acall``: the executor bridges it through a thread."""

    def __init__(self):
        self.calls = []

    def __call__(self, call, attempt):
        self.calls.append(attempt.task.name)
        return ("wrapped", call())

    @hookimpl
    def taskloom_run_wrappers(self, run):
        return self


def test_sync_wrappers_work_around_coroutines():
    tagging = Tagging()

    async def body():
        await asyncio.sleep(0)
        return 5

    engine = Engine(plugins=load_plugins(plugins=[tagging]), executor="asyncio")
    s = engine.run([Task("a", fn=body), Task("b", fn=lambda: 6)])
    assert s.results == {"a": ("wrapped", 5), "b": ("wrapped", 6)}
    assert sorted(tagging.calls) == ["a", "b"]
