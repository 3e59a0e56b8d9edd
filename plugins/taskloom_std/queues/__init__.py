"""Queue strategies: which ready task runs next."""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl
from taskloom_std.queues.strategies import (
    DeadlineQueue,
    FairQueue,
    FifoQueue,
    LifoQueue,
    PriorityQueue,
)


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("queue", "deadline", DeadlineQueue)
    registry.add("queue", "fair", FairQueue)
    registry.add("queue", "fifo", FifoQueue)
    registry.add("queue", "lifo", LifoQueue)
    registry.add("queue", "priority", PriorityQueue)
