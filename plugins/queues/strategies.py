"""Queue strategy implementations.

A strategy holds items with ``priority``, ``tags`` and ``deadline`` attributes (tasks) and is
used under its owner's lock: no locking here. ``pop`` on an empty strategy raises IndexError.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any


class FifoQueue:
    """First in, first out."""

    name = "fifo"

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self.push = self._items.append
        self.pop = self._items.popleft

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Any:
        return iter(self._items)

    def remove(self, item: Any) -> bool:
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    def clear(self) -> None:
        self._items.clear()


class PriorityQueue:
    """Lowest priority number first; first in, first out among equal priorities.

    A min-heap of ``[priority, seq, item]`` entries. ``reorder`` and ``remove`` mark the old
    entry dead and push a new one: O(log n), no heap rebuild.
    """

    name = "priority"

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._entries: dict[int, list[Any]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Any:
        return (e[2] for e in sorted(self._entries.values()))

    def push(self, item: Any) -> None:
        entry = [item.priority, next(self._seq), item]
        self._entries[id(item)] = entry
        heapq.heappush(self._heap, entry)

    def pop(self) -> Any:
        heap = self._heap
        while heap:
            entry = heapq.heappop(heap)
            item = entry[2]
            if item is not None:
                del self._entries[id(item)]
                return item
        raise IndexError("pop from an empty queue")

    def peek(self) -> Any:
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        if not heap:
            raise IndexError("peek at an empty queue")
        return heap[0][2]

    def remove(self, item: Any) -> bool:
        entry = self._entries.pop(id(item), None)
        if entry is None:
            return False
        entry[2] = None
        return True

    def reorder(self, item: Any, priority: int) -> None:
        """Give a queued item a new priority; it keeps its place among equals by arrival."""
        entry = self._entries.get(id(item))
        if entry is None:
            raise KeyError(item)
        entry[2] = None
        new = [priority, entry[1], item]
        self._entries[id(item)] = new
        heapq.heappush(self._heap, new)

    def clear(self) -> None:
        self._heap.clear()
        self._entries.clear()
