"""Each queue strategy against a plain-list model (hypothesis stateful tests).

The model keeps every queued item with its arrival number and works out the next item the
slow, obvious way. After every step the strategy's order (its iteration, which is its pop
order) must equal the model's; at the end, draining the strategy returns exactly the items
that were pushed and neither popped nor removed, each once.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from taskloom import load_plugins
from taskloom_std.queues.strategies import (
    DeadlineQueue,
    FairQueue,
    FifoQueue,
    LifoQueue,
    PriorityQueue,
)


class Item:
    """What a strategy needs of a task."""

    __slots__ = ("deadline", "name", "priority", "tags")

    def __init__(self, name: str, priority: int, tags: frozenset[str], deadline: float | None):
        self.name, self.priority, self.tags, self.deadline = name, priority, tags, deadline

    def __repr__(self) -> str:
        return f"Item({self.name}, p={self.priority}, tags={sorted(self.tags)}, d={self.deadline})"


UNTAGGED = "<untagged>"


def lane(item: Item) -> str:
    return min(item.tags) if item.tags else UNTAGGED


class Model:
    """Queued items with arrival numbers; the order each strategy must follow, spelled out."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: list[tuple[int, Item]] = []  # (arrival, item)
        self.arrivals = 0
        self.rotation: list[str] = []  # fair: lanes in turn order

    def push(self, item: Item) -> None:
        self.arrivals += 1
        self.items.append((self.arrivals, item))
        if self.kind == "fair" and lane(item) not in self.rotation:
            self.rotation.append(lane(item))

    def _drop(self, item: Item) -> None:
        self.items = [(a, i) for a, i in self.items if i is not item]
        if self.kind == "fair" and not any(lane(i) == lane(item) for _, i in self.items):
            self.rotation.remove(lane(item))

    def remove(self, item: Item) -> None:
        self._drop(item)

    def next(self) -> Item:
        items = self.items
        if self.kind == "fifo":
            return min(items, key=lambda e: e[0])[1]
        if self.kind == "lifo":
            return max(items, key=lambda e: e[0])[1]
        if self.kind == "priority":
            return min(items, key=lambda e: (e[1].priority, e[0]))[1]
        if self.kind == "deadline":
            def key(e: tuple[int, Item]) -> tuple[float, int]:
                d = e[1].deadline
                return (math.inf if d is None else d, e[0])
            return min(items, key=key)[1]
        head = self.rotation[0]
        return min((e for e in items if lane(e[1]) == head), key=lambda e: e[0])[1]

    def pop(self) -> Item:
        item = self.next()
        self._drop(item)
        if self.kind == "fair" and lane(item) in self.rotation:
            self.rotation.remove(lane(item))
            self.rotation.append(lane(item))
        return item

    def order(self) -> list[Item]:
        """The full pop order, on a copy."""
        copy = Model(self.kind)
        copy.items, copy.arrivals, copy.rotation = list(self.items), self.arrivals, list(
            self.rotation
        )
        return [copy.pop() for _ in range(len(self.items))]


priorities = st.integers(min_value=1, max_value=4)  # few values: plenty of ties
tag_sets = st.frozensets(st.sampled_from(["a", "b", "c"]), max_size=2)
deadlines = st.one_of(st.none(), st.integers(min_value=0, max_value=5).map(float))


class StrategyMachine(RuleBasedStateMachine):
    kind: ClassVar[str]
    factory: ClassVar[Any]

    def __init__(self) -> None:
        super().__init__()
        self.queue = self.factory()
        self.model = Model(self.kind)
        self.count = 0
        self.pushed: list[Item] = []
        self.gone: list[Item] = []  # popped or removed, each exactly once

    @rule(priority=priorities, tags=tag_sets, deadline=deadlines)
    def push(self, priority: int, tags: frozenset[str], deadline: float | None) -> None:
        self.count += 1
        item = Item(f"t{self.count}", priority, tags, deadline)
        self.queue.push(item)
        self.model.push(item)
        self.pushed.append(item)

    @precondition(lambda self: self.model.items)
    @rule()
    def pop(self) -> None:
        expected = self.model.pop()
        got = self.queue.pop()
        assert got is expected
        self.gone.append(got)

    @precondition(lambda self: self.model.items)
    @rule()
    def peek(self) -> None:
        assert self.queue.peek() is self.model.next()

    @precondition(lambda self: not self.model.items)
    @rule()
    def empty_pop_and_peek_raise(self) -> None:
        with pytest.raises(IndexError):
            self.queue.pop()
        with pytest.raises(IndexError):
            self.queue.peek()

    @precondition(lambda self: self.model.items)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        _, item = data.draw(st.sampled_from(self.model.items))
        assert self.queue.remove(item) is True
        assert self.queue.remove(item) is False
        self.model.remove(item)
        self.gone.append(item)

    @precondition(lambda self: self.model.items)
    @rule(data=st.data(), priority=priorities)
    def reorder(self, data: st.DataObject, priority: int) -> None:
        _, item = data.draw(st.sampled_from(self.model.items))
        item.priority = priority  # what TaskQueue.reorder does to the task
        reorder = getattr(self.queue, "reorder", None)
        if reorder is not None:
            reorder(item, priority)

    @rule()
    def clear_sometimes(self) -> None:
        if len(self.model.items) > 12:
            self.queue.clear()
            for _, item in self.model.items:
                self.gone.append(item)
            self.model = Model(self.kind)

    @invariant()
    def same_size(self) -> None:
        assert len(self.queue) == len(self.model.items)
        assert bool(self.queue) == bool(self.model.items)

    @invariant()
    def same_order(self) -> None:
        assert list(self.queue) == self.model.order()

    def teardown(self) -> None:
        drained = []
        while self.queue:
            drained.append(self.queue.pop())
        everything = self.gone + drained
        assert len(everything) == len(self.pushed)  # nothing duplicated
        assert {id(i) for i in everything} == {id(i) for i in self.pushed}  # nothing lost


SETTINGS = settings(max_examples=35, stateful_step_count=30, deadline=None)


def machine(kind: str, factory: Any) -> Any:
    cls = type(f"{kind.title()}Machine", (StrategyMachine,), {"kind": kind, "factory": factory})
    return SETTINGS(cls).TestCase


TestFifo = machine("fifo", FifoQueue)
TestLifo = machine("lifo", LifoQueue)
TestPriority = machine("priority", PriorityQueue)
TestDeadline = machine("deadline", DeadlineQueue)
TestFair = machine("fair", FairQueue)


def test_every_strategy_is_registered_by_the_queues_plugin():
    ps = load_plugins()
    assert ps.registry.names("queue") == ["deadline", "fair", "fifo", "lifo", "priority"]
    for name in ps.registry.names("queue"):
        assert ps.registry.owner("queue", name) == "queues"
        q = ps.registry.create("queue", name)
        for method in ("push", "pop", "peek", "remove", "clear", "__len__", "__bool__"):
            assert callable(getattr(q, method)), (name, method)


def test_priority_reorder_keeps_arrival_order_among_equals():
    q = PriorityQueue()
    a, b, c = (Item(n, 5, frozenset(), None) for n in "abc")
    for item in (a, b, c):
        q.push(item)
    q.reorder(c, 1)
    q.reorder(a, 1)  # a arrived before c: it goes first among the priority-1 items
    assert [q.pop() for _ in range(3)] == [a, c, b]
    with pytest.raises(KeyError):
        q.reorder(a, 2)


def test_priority_heap_stays_proportional_to_its_size_under_many_reorders():
    q = PriorityQueue()
    items = [Item(f"t{i}", 5, frozenset(), None) for i in range(100)]
    for item in items:
        q.push(item)
    for round_ in range(50):
        for item in items:
            q.reorder(item, 1 + (round_ % 10))
    assert len(q._heap) <= 2 * len(items) + 65
    assert sorted(q.pop().name for _ in range(100)) == sorted(i.name for i in items)


def test_fair_queue_one_flooding_tag_cannot_starve_another():
    q = FairQueue()
    flood = [Item(f"bulk{i}", 1, frozenset({"bulk"}), None) for i in range(1000)]
    for item in flood:
        q.push(item)
    late = Item("report", 1, frozenset({"report", "zzz"}), None)
    untagged = Item("plain", 1, frozenset(), None)
    q.push(late)
    q.push(untagged)
    first = [q.pop().name for _ in range(3)]
    assert first == ["bulk0", "report", "plain"]


def test_fair_lane_is_the_first_tag_in_sorted_order():
    q = FairQueue()
    x = Item("x", 1, frozenset({"zeta", "alpha"}), None)
    y = Item("y", 1, frozenset({"alpha"}), None)
    z = Item("z", 1, frozenset({"zeta"}), None)
    for item in (x, y, z):
        q.push(item)
    # x and y share the "alpha" lane; z has its own.
    assert [q.pop() for _ in range(3)] == [x, z, y]


def test_deadline_queue_reads_task_deadlines_and_puts_undated_last():
    from datetime import datetime, timezone

    from taskloom import Task

    q = DeadlineQueue()
    undated = Task("undated")
    later = Task("later", deadline=datetime(2030, 1, 1, tzinfo=timezone.utc))
    sooner = Task("sooner", deadline=1_800_000_000.0)
    for t in (undated, later, sooner):
        q.push(t)
    assert [q.pop().name for _ in range(3)] == ["sooner", "later", "undated"]
