"""Queue strategies in engine runs: ``Engine(queue=...)`` picks the order ready tasks start in."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import Engine, Task, TaskManager, UnknownComponentError, hookimpl, load_plugins


class StartOrder:
    """Records the order tasks move to ``running``."""

    def __init__(self) -> None:
        self.names: list[str] = []

    @hookimpl
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        if new == "running":
            self.names.append(task.name)


def start_order(queue: str, tasks: list[Task]) -> list[str]:
    rec = StartOrder()
    # One worker: every start after the first waits for a finish, so the queue decides.
    engine = Engine(queue=queue, max_workers=1, plugins=load_plugins(plugins=[rec]))
    summary = engine.run(tasks)
    assert summary.ok
    return rec.names


def spread() -> list[Task]:
    return [
        Task("a", priority=5, tags=["x"], deadline=30.0),
        Task("b", priority=2, tags=["x"]),
        Task("c", priority=5, tags=["y"], deadline=10.0),
        Task("d", priority=1, deadline=20.0),
        Task("e", priority=2, tags=["y"], deadline=10.0),
        Task("f", priority=9, tags=["x"]),
    ]


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        ("fifo", ["a", "b", "c", "d", "e", "f"]),
        ("lifo", ["f", "e", "d", "c", "b", "a"]),
        ("priority", ["d", "b", "e", "a", "c", "f"]),
        ("deadline", ["c", "e", "d", "a", "b", "f"]),
        # lanes in order of first arrival: x, y, untagged; round-robin across them.
        ("fair", ["a", "c", "d", "b", "e", "f"]),
    ],
)
def test_each_strategy_orders_the_starts_of_a_run(queue: str, expected: list[str]):
    assert start_order(queue, spread()) == expected


def test_dependents_join_the_queue_when_they_become_ready():
    tasks = [
        Task("root", priority=9),
        Task("child", priority=1, dependencies=["root"]),
        Task("other", priority=5),
    ]
    # root runs first only because it was there; child (priority 1) waits for it.
    assert start_order("priority", tasks) == ["other", "root", "child"]


def test_fair_queue_keeps_a_late_tag_from_waiting_behind_a_flood():
    flood = [Task(f"bulk{i}", tags=["bulk"]) for i in range(200)]
    urgent = [Task(f"urgent{i}", tags=["urgent"]) for i in range(3)]
    order = start_order("fair", flood + urgent)
    assert [order.index(u.name) for u in urgent] == [1, 3, 5]
    assert start_order("fifo", flood + urgent).index("urgent0") == 200


def test_unknown_queue_name_fails_before_any_run_listing_the_names():
    with pytest.raises(UnknownComponentError) as err:
        Engine(queue="shortest_job_first")
    assert str(err.value) == (
        "no queue strategy 'shortest_job_first'; registered: deadline, fair, fifo, lifo, priority"
    )


def test_task_manager_takes_the_queue_by_name():
    manager = TaskManager(max_workers=1, queue="lifo")
    assert manager.engine.queue_name == "lifo"
    with pytest.raises(UnknownComponentError):
        TaskManager(queue="nope")
