"""TaskQueue (priority strategy) against a bare ``heapq`` behind a ``threading.Lock``.

Throughput: a queue already holding N tasks takes N more enqueue+dequeue pairs (so every
operation works on a queue of about N tasks); pairs per second, both sides in the same run,
in rounds that rotate which side goes first. Reorder: the cost of one
``reorder(task_id, priority)`` on a queue of N tasks, in microseconds. N = 100,000 (10,000
with ``quick``).
"""

from __future__ import annotations

import gc
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable

from common import Row, Stat, per_round, rate, wall

from taskloom import Task, TaskQueue, load_plugins

REPS = 5


def _paired_with_setup(
    a: Callable[[], Callable[[], object]],
    b: Callable[[], Callable[[], object]],
    reps: int = REPS,
) -> tuple[list[float], list[float]]:
    """Like ``common.paired``, but ``a()``/``b()`` build untimed state and return the timed part."""
    ta: list[float] = []
    tb: list[float] = []
    sides = [(a, ta), (b, tb)]
    for i in range(reps + 1):  # the first round warms up
        for make, out in sides[i % 2:] + sides[:i % 2]:
            timed = make()
            gc.collect()
            t0 = time.perf_counter()
            timed()
            elapsed = time.perf_counter() - t0
            if i:
                out.append(elapsed)
    return ta, tb


def _tasks(n: int, prefix: str, rng: random.Random) -> list[Task]:
    return [Task(f"{prefix}{i}", priority=rng.randint(1, 10)) for i in range(n)]


def rows(quick: bool) -> list[Row]:
    n = 10_000 if quick else 100_000
    rng = random.Random(42)
    plugins = load_plugins()
    resident = _tasks(n, "r", rng)
    incoming = _tasks(n, "i", rng)

    def taskqueue_pairs() -> Callable[[], object]:
        q = TaskQueue("priority", plugins=plugins)
        for t in resident:
            q.enqueue(t)
        enqueue, dequeue = q.enqueue, q.dequeue

        def timed() -> None:
            for t in incoming:
                enqueue(t)
                dequeue()

        return timed

    def heapq_pairs() -> Callable[[], object]:
        seq = itertools.count()
        heap = [(t.priority, next(seq), t) for t in resident]
        heapq.heapify(heap)
        lock = threading.Lock()
        push, pop = heapq.heappush, heapq.heappop

        def timed() -> None:
            for t in incoming:
                with lock:
                    push(heap, (t.priority, next(seq), t))
                with lock:
                    pop(heap)

        return timed

    tq, hq = _paired_with_setup(taskqueue_pairs, heapq_pairs)
    out = [
        Row(
            workload=f"queue: enqueue+dequeue pairs, priority queue of {n:,} tasks",
            unit="pairs/s",
            taskloom=rate(n, tq),
            baseline=rate(n, hq),
            baseline_name="heapq + threading.Lock",
            ratios=per_round(tq, hq),
            target=">= 0.3x",
            min_ratio=0.3,
        )
    ]

    ids = [t.id for t in resident]  # ids made up front are indexed when queued
    changes = [(rng.choice(ids), rng.randint(1, 10)) for _ in range(n)]
    per_reorder: list[float] = []
    for i in range(REPS + 1):
        q = TaskQueue("priority", plugins=plugins)
        for t in resident:
            q.enqueue(t)
        reorder = q.reorder
        gc.collect()
        t0 = time.perf_counter()
        for task_id, priority in changes:
            reorder(task_id, priority)
        elapsed = time.perf_counter() - t0
        if i:
            per_reorder.append(elapsed / len(changes) * 1e6)
    stat: Stat = wall(per_reorder)
    out.append(
        Row(
            workload=f"queue: reorder(task_id, priority) on a queue of {n:,} tasks",
            unit="us",
            taskloom=stat,
            higher_is_better=False,
            target="< 10 us",
            max_value=10,
        )
    )
    return out


if __name__ == "__main__":
    import sys

    for row in rows("--quick" in sys.argv):
        ratio = f"  ratio {row.ratio_text()}" if row.ratio is not None else ""
        base = f"  vs {row.baseline.fmt()}" if row.baseline else ""
        print(f"{row.workload}: {row.taskloom.fmt(2)} {row.unit}{base}{ratio}  [{row.target}]")
