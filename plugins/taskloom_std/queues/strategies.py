"""Queue strategy implementations.

A strategy holds items with ``priority``, ``tags`` and ``deadline`` attributes (tasks) and is
used under its owner's lock: no locking here. ``pop`` and ``peek`` on an empty strategy raise
IndexError. The owner never pushes an item that is already queued. Iterating yields the items
in the order ``pop`` would return them.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from heapq import heappop, heappush
from typing import Any


class FifoQueue:
    """First in, first out."""

    name = "fifo"

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        # Bound methods as attributes: the engine's dispatch loop calls these per task.
        self.push = self._items.append
        self.pop = self._items.popleft

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))

    def peek(self) -> Any:
        if not self._items:
            raise IndexError("peek at an empty queue")
        return self._items[0]

    def remove(self, item: Any) -> bool:
        try:
            self._items.remove(item)
        except ValueError:
            return False
        return True

    def clear(self) -> None:
        self._items.clear()


class LifoQueue:
    """Last in, first out: the most recently queued item runs next."""

    name = "lifo"

    def __init__(self) -> None:
        self._items: list[Any] = []
        self.push = self._items.append
        self.pop = self._items.pop

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[Any]:
        items: list[Any] = self._items[::-1]
        return iter(items)

    def peek(self) -> Any:
        if not self._items:
            raise IndexError("peek at an empty queue")
        return self._items[-1]

    def remove(self, item: Any) -> bool:
        items = self._items
        # Search from the top: recently queued items are the likeliest to be withdrawn.
        for i in range(len(items) - 1, -1, -1):
            if items[i] is item:
                del items[i]
                return True
        return False

    def clear(self) -> None:
        self._items.clear()


class _LazyHeap:
    """A min-heap of ``(key, gen, item)`` entries with O(log n) removal by replacement.

    ``key`` orders the entries and includes the arrival number, so ties go to the earlier
    arrival (``reorder`` keeps it). ``gen`` is unique per entry, so two entries never get as
    far as comparing their items. ``_entries`` maps each queued item to its one live entry;
    an entry that is not it (removed, or replaced by ``reorder``) is dead and is dropped when
    it reaches the top. When dead entries outnumber live ones the heap is rebuilt, so memory
    stays proportional to ``len``. Entries are tuples: a comparison reads them in place.
    """

    def __init__(self, key: Callable[[Any, int], Any]) -> None:
        self._key = key
        self._heap: list[tuple[Any, int, Any]] = []
        self._entries: dict[int, tuple[Any, int, Any]] = {}
        self._seq = itertools.count()
        self._gen = itertools.count(-1, -1)  # reorder entries; pushes use their seq (>= 0)
        self._dead = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[Any]:
        return (e[2] for e in sorted(self._entries.values()))

    def push(self, item: Any) -> None:
        seq = next(self._seq)
        entry = (self._key(item, seq), seq, item)
        self._entries[id(item)] = entry
        heappush(self._heap, entry)

    def pop(self) -> Any:
        heap, entries = self._heap, self._entries
        while heap:
            entry = heappop(heap)
            item = entry[2]
            key = id(item)
            live = entries.pop(key, None)
            if live is entry:
                return item
            if live is not None:  # a dead entry of an item still queued: keep the live one
                entries[key] = live
            self._dead -= 1
        raise IndexError("pop from an empty queue")

    def peek(self) -> Any:
        heap, entries = self._heap, self._entries
        while heap and entries.get(id(heap[0][2])) is not heap[0]:
            heappop(heap)
            self._dead -= 1
        if not heap:
            raise IndexError("peek at an empty queue")
        return heap[0][2]

    def remove(self, item: Any) -> bool:
        if self._entries.pop(id(item), None) is None:
            return False
        self._one_dead()
        return True

    def _one_dead(self) -> None:
        self._dead += 1
        entries = self._entries
        if self._dead > 64 and self._dead > len(entries):
            self._heap = [e for e in self._heap if entries.get(id(e[2])) is e]
            heapq.heapify(self._heap)
            self._dead = 0

    def clear(self) -> None:
        self._heap.clear()
        self._entries.clear()
        self._dead = 0


# Priority and arrival folded into one int: one comparison per heap step, not two.
_ARRIVALS = 1 << 48


class PriorityQueue(_LazyHeap):
    """Lowest priority number first; first in, first out among equal priorities.

    Priorities are integers. ``reorder`` and ``remove`` replace the entry and leave the old
    one dead in the heap: O(log n), no heap rebuild on the spot.
    """

    name = "priority"

    def __init__(self) -> None:
        super().__init__(_priority_key)

    def push(self, item: Any) -> None:  # _LazyHeap.push with the key inlined: the hot path
        seq = next(self._seq)
        entry = (item.priority * _ARRIVALS + seq, seq, item)
        self._entries[id(item)] = entry
        heappush(self._heap, entry)

    def reorder(self, item: Any, priority: int) -> None:
        """Give a queued item a new priority; it keeps its place among equals by arrival."""
        entries = self._entries
        key = id(item)
        entry = entries.get(key)
        if entry is None:
            raise KeyError(item)
        new = (priority * _ARRIVALS + entry[0] % _ARRIVALS, next(self._gen), item)
        entries[key] = new
        heappush(self._heap, new)
        self._one_dead()


def _priority_key(item: Any, seq: int) -> Any:
    return item.priority * _ARRIVALS + seq


class DeadlineQueue(_LazyHeap):
    """Earliest deadline first; items without a deadline after all that have one.

    First in, first out among equal deadlines (and among items without one). The deadline is
    read when the item is queued.
    """

    name = "deadline"

    def __init__(self) -> None:
        super().__init__(_deadline_key)


def _deadline_key(item: Any, seq: int) -> tuple[float, int]:
    deadline = item.deadline
    return (math.inf if deadline is None else float(deadline), seq)


_UNTAGGED: Any = object()


class FairQueue:
    """Round-robin across tags, so one tag's flood cannot starve another.

    An item's lane is its first tag in sorted order; untagged items share one lane. Each pop
    takes the oldest item of the lane at the front of the rotation and sends that lane to the
    back. Within a lane, first in, first out.
    """

    name = "fair"

    def __init__(self) -> None:
        self._lanes: dict[Any, deque[Any]] = {}
        self._rotation: deque[Any] = deque()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[Any]:
        lanes = [list(self._lanes[key]) for key in self._rotation]
        depth = max(map(len, lanes), default=0)
        for i in range(depth):
            for lane in lanes:
                if i < len(lane):
                    yield lane[i]

    @staticmethod
    def lane_of(item: Any) -> Any:
        tags = item.tags
        return min(tags) if tags else _UNTAGGED

    def push(self, item: Any) -> None:
        key = self.lane_of(item)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = deque()
            self._rotation.append(key)
        lane.append(item)
        self._len += 1

    def pop(self) -> Any:
        if not self._len:
            raise IndexError("pop from an empty queue")
        key = self._rotation.popleft()
        lane = self._lanes[key]
        item = lane.popleft()
        if lane:
            self._rotation.append(key)
        else:
            del self._lanes[key]
        self._len -= 1
        return item

    def peek(self) -> Any:
        if not self._len:
            raise IndexError("peek at an empty queue")
        return self._lanes[self._rotation[0]][0]

    def remove(self, item: Any) -> bool:
        key = self.lane_of(item)
        lane = self._lanes.get(key)
        if lane is None:
            return False
        for i, queued in enumerate(lane):
            if queued is item:
                del lane[i]
                break
        else:
            return False
        if not lane:
            del self._lanes[key]
            self._rotation.remove(key)
        self._len -= 1
        return True

    def clear(self) -> None:
        self._lanes.clear()
        self._rotation.clear()
        self._len = 0
