"""TaskQueue: the documented API, dependencies, reorder, threads and blocking dequeue."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskloom import (
    DuplicateTaskError,
    Engine,
    FakeClock,
    QueueFullError,
    Task,
    TaskQueue,
    TaskState,
    UnknownComponentError,
    hookimpl,
    load_plugins,
)


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load_plugins()


def complete(*tasks: Task) -> None:
    """Run tasks through a real engine so that they end ``completed``."""
    summary = Engine(executor="inline").run(list(tasks))
    assert summary.ok


def wait_for_sleeper(q: TaskQueue) -> None:
    """Until a thread is blocked in ``q.dequeue(timeout=...)``."""
    for _ in range(5000):
        if q._sleepers:
            return
        time.sleep(0.001)
    raise AssertionError("no thread blocked in dequeue")


# -- the documented examples, as the module page shows them -------------------------------------
def test_documented_priority_queue_example(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("docs-example")

    # Create priority queue
    queue = TaskQueue(queue_type="priority")

    # Add tasks with different priorities
    high_priority_task = Task("urgent_fix", priority=1)
    medium_priority_task = Task("feature_update", priority=5)
    low_priority_task = Task("cleanup", priority=9)

    queue.enqueue(medium_priority_task)
    queue.enqueue(high_priority_task)  # Will be processed first
    queue.enqueue(low_priority_task)

    # Process tasks in priority order
    while queue.get_queue_size() > 0:
        task = queue.dequeue()
        logger.info(f"Processing: {task.name} (priority: {task.priority})")
        task.execute()

    assert [r.getMessage() for r in caplog.records if r.name == "docs-example"] == [
        "Processing: urgent_fix (priority: 1)",
        "Processing: feature_update (priority: 5)",
        "Processing: cleanup (priority: 9)",
    ]


def test_documented_fifo_queue_example():
    ran: list[str] = []

    # Create FIFO (First In, First Out) queue
    fifo_queue = TaskQueue(queue_type="fifo")

    # Add tasks in order
    tasks = [Task("step_1", description="Initialize system", fn=lambda: ran.append("step_1")),
        Task("step_2", description="Load configuration", fn=lambda: ran.append("step_2")),
        Task("step_3", description="Start processing", fn=lambda: ran.append("step_3"))
    ]

    for task in tasks:
        fifo_queue.enqueue(task)

    # Process in order
    while fifo_queue.get_queue_size() > 0:
        task = fifo_queue.dequeue()
        task.execute()

    assert ran == ["step_1", "step_2", "step_3"]


# -- construction --------------------------------------------------------------------------------
def test_unknown_queue_type_lists_the_registered_strategies(plugins: Any):
    with pytest.raises(UnknownComponentError) as err:
        TaskQueue(queue_type="random", plugins=plugins)
    assert str(err.value) == (
        "no queue strategy 'random'; registered: deadline, fair, fifo, lifo, priority"
    )


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_max_size_must_be_a_positive_integer(bad: Any, plugins: Any):
    with pytest.raises(ValueError, match="max_size"):
        TaskQueue(max_size=bad, plugins=plugins)


def test_default_plugin_set_is_loaded_on_first_queue_and_shared():
    code = (
        "import taskloom, taskloom.api.queue as q\n"
        "assert q._default_plugins is None\n"
        "a = taskloom.TaskQueue()\n"
        "ps = q._default_plugins\n"
        "assert ps is not None\n"
        "taskloom.TaskQueue('fifo')\n"
        "assert q._default_plugins is ps\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_strategy_from_a_third_party_plugin_is_used():
    class Alphabetical:
        """Smallest name first; no peek, no reorder (both optional)."""

        def __init__(self) -> None:
            self.items: list[Any] = []

        def push(self, item: Any) -> None:
            self.items.append(item)
            self.items.sort(key=lambda t: t.name)

        def pop(self) -> Any:
            if not self.items:
                raise IndexError("empty")
            return self.items.pop(0)

        def __len__(self) -> int:
            return len(self.items)

        def __bool__(self) -> bool:
            return bool(self.items)

        def clear(self) -> None:
            self.items.clear()

        def remove(self, item: Any) -> bool:
            return False

    class Plugin:
        @hookimpl
        def taskloom_register(self, registry: Any) -> None:
            registry.add("queue", "alphabetical", Alphabetical)

    ps = load_plugins(plugins=[Plugin()], entry_points=False)
    q = TaskQueue("alphabetical", plugins=ps)
    for name in ("c", "a", "b"):
        q.enqueue(Task(name, priority=10 if name == "a" else 1))
    q.reorder("b", 3)  # no reorder in the strategy: only the priority changes
    assert q.get_tasks_by_status("pending")[2].priority == 3
    with pytest.raises(TypeError, match="alphabetical"):
        q.peek()
    assert [q.dequeue().name for _ in range(3)] == ["a", "b", "c"]


# -- enqueue / dequeue ---------------------------------------------------------------------------
def test_enqueue_twice_is_an_error_naming_the_task(plugins: Any):
    q = TaskQueue(plugins=plugins)
    t = Task("ingest")
    q.enqueue(t)
    with pytest.raises(DuplicateTaskError, match="'ingest'"):
        q.enqueue(t)
    with pytest.raises(DuplicateTaskError, match="'ingest'"):
        q.enqueue(Task("ingest"))
    assert q.get_queue_size() == 1
    assert q.dequeue() is t
    q.enqueue(t)  # once dequeued it may come back (a retry)
    assert q.dequeue() is t


def test_enqueue_rejects_what_is_not_a_task(plugins: Any):
    with pytest.raises(TypeError):
        TaskQueue(plugins=plugins).enqueue("not a task")  # type: ignore[arg-type]


def test_bounded_queue_raises_queue_full(plugins: Any):
    q = TaskQueue(max_size=2, plugins=plugins)
    q.enqueue(Task("a"))
    q.enqueue(Task("b"))
    with pytest.raises(QueueFullError, match=r"full \(2 tasks\).*'c'"):
        q.enqueue(Task("c"))
    q.dequeue()
    q.enqueue(Task("c"))
    assert q.get_queue_size() == 2


def test_empty_queue_dequeues_and_peeks_none(plugins: Any):
    q = TaskQueue(plugins=plugins)
    assert q.dequeue() is None
    assert q.peek() is None
    assert q.get_queue_size() == 0


def test_peek_shows_the_next_dequeue_without_removing_it(plugins: Any):
    q = TaskQueue(plugins=plugins)
    for name, p in (("x", 5), ("y", 2), ("z", 2)):
        q.enqueue(Task(name, priority=p))
    assert q.peek().name == "y"
    assert q.peek().name == "y"
    assert q.get_queue_size() == 3
    assert [q.dequeue().name for _ in range(3)] == ["y", "z", "x"]


# -- dependencies ----------------------------------------------------------------------------------
def test_a_task_waits_until_its_dependency_has_completed(plugins: Any):
    q = TaskQueue(plugins=plugins)
    load = Task("load", priority=1, dependencies=["extract"])
    extract = Task("extract", priority=9)
    q.enqueue(load)
    q.enqueue(extract)
    assert q.peek() is extract  # load is better by priority but not eligible
    assert q.dequeue() is extract
    assert q.dequeue() is None  # extract was handed out but has not completed
    assert q.get_queue_size() == 1
    complete(extract)
    assert q.peek() is load
    assert q.dequeue() is load
    assert q.get_queue_size() == 0


def test_dependencies_on_names_the_queue_never_saw_do_not_block(plugins: Any):
    q = TaskQueue(plugins=plugins)
    t = Task("report", dependencies=["somewhere_else"])
    q.enqueue(t)
    assert q.dequeue() is t


def test_a_completed_dependency_still_queued_does_not_block(plugins: Any):
    q = TaskQueue(queue_type="fifo", plugins=plugins)
    done = Task("done")
    complete(done)
    after = Task("after", dependencies=["done"])
    q.enqueue(done)
    q.enqueue(after)
    q.enqueue(Task("other"))
    assert [q.dequeue().name for _ in range(3)] == ["done", "after", "other"]


def test_a_chain_enqueued_backwards_comes_out_in_dependency_order(plugins: Any):
    q = TaskQueue(queue_type="lifo", plugins=plugins)
    names = [f"s{i}" for i in range(50)]
    tasks = [Task(n, dependencies=[names[i - 1]] if i else None) for i, n in enumerate(names)]
    for t in tasks:
        q.enqueue(t)
    engine = Engine(executor="inline")
    run = engine.open_run()
    run.start()
    order = []
    while q.get_queue_size():
        t = q.dequeue()
        assert t is not None, "a task became eligible but was not handed out"
        order.append(t.name)
        run.add([t])
        run.wait()
        assert t.status == "completed"
    run.close()
    assert order == names


def test_multiple_dependencies_are_all_waited_for(plugins: Any):
    q = TaskQueue(queue_type="fifo", plugins=plugins)
    a, b = Task("a"), Task("b")
    join = Task("join", dependencies=["a", "b"])
    for t in (join, a, b):
        q.enqueue(t)
    assert q.dequeue() is a
    assert q.dequeue() is b
    complete(a)
    assert q.dequeue() is None
    complete(b)
    assert q.dequeue() is join


# -- reorder ---------------------------------------------------------------------------------------
def test_reorder_by_id_name_or_task_takes_effect(plugins: Any):
    q = TaskQueue(plugins=plugins)
    a, b, c = Task("a", priority=3), Task("b", priority=5), Task("c", priority=7)
    a_id = a.id  # made before enqueue
    for t in (a, b, c):
        q.enqueue(t)
    q.reorder(c.id, 1)  # id made after enqueue
    assert c.priority == 1
    assert q.peek() is c
    q.reorder("b", 2)
    q.reorder(a, 4)
    q.reorder(a_id, 4)
    assert [q.dequeue().name for _ in range(3)] == ["c", "b", "a"]


def test_reorder_unknown_id_is_a_key_error_naming_it(plugins: Any):
    q = TaskQueue(plugins=plugins)
    done = Task("done")
    q.enqueue(done)
    q.dequeue()
    with pytest.raises(KeyError, match="nope"):
        q.reorder("nope", 1)
    with pytest.raises(KeyError, match="done"):
        q.reorder(done, 1)  # no longer queued


@pytest.mark.parametrize("bad", [0, 11, 2.5, True, "1"])
def test_reorder_validates_the_priority(bad: Any, plugins: Any):
    q = TaskQueue(plugins=plugins)
    t = Task("t", priority=4)
    q.enqueue(t)
    with pytest.raises(ValueError, match="priority must be an integer from 1"):
        q.reorder("t", bad)
    assert t.priority == 4


def test_reorder_of_a_task_waiting_on_a_dependency_applies_when_it_is_released(plugins: Any):
    q = TaskQueue(plugins=plugins)
    up = Task("up", priority=1)
    waiting = Task("waiting", priority=9, dependencies=["up"])
    other = Task("other", priority=5)
    q.enqueue(up)
    q.enqueue(waiting)
    assert q.dequeue() is up
    assert q.dequeue() is None  # waiting is now held aside
    q.enqueue(other)
    q.reorder("waiting", 1)
    complete(up)
    assert [q.dequeue().name for _ in range(2)] == ["waiting", "other"]


# -- status, clear -----------------------------------------------------------------------------------
def test_get_tasks_by_status_covers_queued_and_dequeued_tasks(plugins: Any):
    q = TaskQueue(queue_type="fifo", plugins=plugins)
    a, b, c = Task("a"), Task("b"), Task("c")
    for t in (a, b, c):
        q.enqueue(t)
    first = q.dequeue()
    complete(first)
    assert q.get_tasks_by_status("completed") == [a]
    assert q.get_tasks_by_status("pending") == [b, c]
    assert q.get_tasks_by_status("failed") == []
    with pytest.raises(ValueError, match="unknown task status 'done'; one of pending"):
        q.get_tasks_by_status("done")


def test_clear_empties_the_queue_and_forgets_its_tasks(plugins: Any):
    q = TaskQueue(plugins=plugins)
    a = Task("a")
    q.enqueue(a)
    q.dequeue()
    q.enqueue(Task("b", dependencies=["a"]))
    q.clear()
    assert q.get_queue_size() == 0
    assert q.get_tasks_by_status("pending") == []
    b = Task("b", dependencies=["a"])  # "a" is forgotten: no longer blocks
    q.enqueue(b)
    assert q.dequeue() is b


# -- threads -------------------------------------------------------------------------------------------
def test_producers_and_consumers_lose_and_duplicate_nothing(plugins: Any):
    q = TaskQueue(plugins=plugins)
    producers, consumers, per_producer = 4, 4, 400
    got: list[str] = []
    got_lock = threading.Lock()

    def produce(p: int) -> None:
        for i in range(per_producer):
            q.enqueue(Task(f"p{p}-{i}", priority=1 + i % 9))

    def consume() -> None:
        mine = []
        while True:
            t = q.dequeue(timeout=10)
            assert t is not None
            if t.name.startswith("stop"):
                break
            mine.append(t.name)
        with got_lock:
            got.extend(mine)

    workers = [threading.Thread(target=consume) for _ in range(consumers)]
    for w in workers:
        w.start()
    makers = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for m in makers:
        m.start()
    for m in makers:
        m.join()
    for i in range(consumers):  # priority 10: after every real task
        q.enqueue(Task(f"stop{i}", priority=10))
    for w in workers:
        w.join(timeout=20)
        assert not w.is_alive()
    expected = {f"p{p}-{i}" for p in range(producers) for i in range(per_producer)}
    assert len(got) == len(expected)
    assert set(got) == expected
    assert q.get_queue_size() == 0


def test_blocking_dequeue_wakes_on_enqueue(plugins: Any):
    q = TaskQueue(plugins=plugins)
    out: deque[Task | None] = deque()
    worker = threading.Thread(target=lambda: out.append(q.dequeue(timeout=None)))
    worker.start()
    wait_for_sleeper(q)
    t = Task("job")
    q.enqueue(t)
    worker.join(timeout=10)
    assert list(out) == [t]


def test_blocking_dequeue_times_out_on_the_injected_clock(plugins: Any):
    clock = FakeClock()
    q = TaskQueue(plugins=plugins, clock=clock)
    out: deque[Task | None] = deque()
    worker = threading.Thread(target=lambda: out.append(q.dequeue(timeout=30)))
    worker.start()
    wait_for_sleeper(q)
    clock.advance(29)
    assert not out  # not before its time
    clock.advance(1)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert list(out) == [None]


def test_blocking_dequeue_notices_a_dependency_completing(plugins: Any):
    q = TaskQueue(plugins=plugins)
    up = Task("up")
    down = Task("down", dependencies=["up"])
    q.enqueue(up)
    q.enqueue(down)
    assert q.dequeue() is up
    out: deque[Task | None] = deque()
    worker = threading.Thread(target=lambda: out.append(q.dequeue(timeout=None)))
    worker.start()
    wait_for_sleeper(q)
    complete(up)
    worker.join(timeout=10)
    assert list(out) == [down]


def test_negative_timeout_is_rejected(plugins: Any):
    with pytest.raises(ValueError, match="timeout"):
        TaskQueue(plugins=plugins).dequeue(timeout=-1)


# -- a model check with dependencies -----------------------------------------------------------------
PLUGINS = load_plugins()


class QueueWithDependencies(RuleBasedStateMachine):
    """Random enqueues (with dependencies), dequeues, completions and reorders.

    Every dequeue must return a task whose known dependencies have all completed, with the
    best priority among such tasks, or None when there is none; nothing is lost or repeated.
    """

    def __init__(self) -> None:
        super().__init__()
        self.q = TaskQueue(plugins=PLUGINS)
        self.queued: dict[str, Task] = {}
        self.known: dict[str, Task] = {}
        self.handed_out: list[Task] = []
        self.count = 0

    def eligible(self) -> list[Task]:
        def ok(t: Task) -> bool:
            return all(
                d not in self.known or self.known[d].status == "completed"
                for d in t.dependencies
            )
        return [t for t in self.queued.values() if ok(t)]

    @rule(priority=st.integers(1, 10), data=st.data())
    def enqueue(self, priority: int, data: st.DataObject) -> None:
        self.count += 1
        names = [*self.known, "elsewhere"]
        deps = data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
        t = Task(f"t{self.count}", priority=priority, dependencies=deps)
        self.q.enqueue(t)
        self.queued[t.name] = t
        self.known[t.name] = t

    @rule()
    def dequeue(self) -> None:
        expected = self.eligible()
        got = self.q.dequeue()
        if not expected:
            assert got is None
            return
        assert got is not None and got.name in self.queued
        assert got in expected
        assert got.priority == min(t.priority for t in expected)
        del self.queued[got.name]
        self.handed_out.append(got)

    @precondition(lambda self: any(t.status != "completed" for t in self.handed_out))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        running = [t for t in self.handed_out if t.status != "completed"]
        t = data.draw(st.sampled_from(running))
        t._status = TaskState.COMPLETED  # as a run would leave it

    @precondition(lambda self: self.queued)
    @rule(data=st.data(), priority=st.integers(1, 10))
    def reorder(self, data: st.DataObject, priority: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.queued)))
        self.q.reorder(name, priority)
        assert self.queued[name].priority == priority

    @invariant()
    def sizes_agree(self) -> None:
        assert self.q.get_queue_size() == len(self.queued)
        peeked = self.q.peek()
        expected = self.eligible()
        assert (peeked is None) == (not expected)
        if peeked is not None:
            assert peeked.priority == min(t.priority for t in expected)

    def teardown(self) -> None:
        for t in self.queued.values():
            t._status = TaskState.COMPLETED
        for t in self.handed_out:
            t._status = TaskState.COMPLETED
        rest = []
        while (t := self.q.dequeue()) is not None:
            rest.append(t)
        names = [t.name for t in self.handed_out + rest]
        assert len(names) == len(set(names)) == self.count


TestQueueWithDependencies = settings(
    max_examples=40, stateful_step_count=40, deadline=None
)(QueueWithDependencies).TestCase
