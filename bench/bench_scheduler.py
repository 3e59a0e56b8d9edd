"""W5: the scheduler. Registering interval jobs, the next-due lookup, pop + reschedule, cron
next-fire computations, and how late a job fires on the real clock.

Each figure runs beside its floor in the same process: a plain ``heapq`` of tuples, cronsim
iterated directly, and a bare ``Event.wait`` loop sleeping until each due time.
"""

from __future__ import annotations

import gc
import heapq
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from common import Row, paired, per_round, rate, wall
from cronsim import CronSim

import taskloom
from taskloom import Engine, FakeClock, MemoryScheduleState, Task, TaskScheduler, hookimpl
from taskloom_std.scheduling import CronTrigger

UTC = timezone.utc
CRON = "*/5 9-17 * * 1-5"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _schedulers(engine: Engine, count: int, clock: Any = None) -> list[TaskScheduler]:
    return [TaskScheduler(engine=engine, clock=clock, state=MemoryScheduleState())
            for _ in range(count)]


def _register(n: int, reps: int) -> tuple[Row, list[TaskScheduler]]:
    engine = Engine(plugins=taskloom.load_plugins())
    tasks = [Task(f"job{i}") for i in range(n)]
    # Built beforehand: only the registrations are timed.
    pool = _schedulers(engine, reps + 2)
    filled: list[TaskScheduler] = []

    def tl() -> None:
        sched = pool.pop()
        every = sched.schedule_recurring
        for t in tasks:
            every(t, 60)
        filled[:] = [sched]  # keep one: a pile of full schedulers only slows the collector

    def floor() -> None:
        heap: list[tuple[float, int, Task]] = []
        push = heapq.heappush
        now = time.time()
        for i, t in enumerate(tasks):
            push(heap, (now + 60, i, t))

    t_tl, t_floor = paired(tl, floor, reps)
    ms = [s * 1e3 for s in t_tl]
    floor_ms = [s * 1e3 for s in t_floor]
    row = Row(f"W5 register {n:,} interval jobs", "ms", wall(ms), wall(floor_ms),
              "heapq push", higher_is_better=False, ratios=per_round(t_tl, t_floor),
              target="< 25 ms (APScheduler 245 ms)", max_value=25)
    return row, filled


def _peek(sched: TaskScheduler, reps: int, calls: int) -> Row:
    heap = [(float(i), i, None) for i in range(len(sched.get_jobs()))]
    heapq.heapify(heap)
    next_due = sched.next_due

    def tl() -> None:
        for _ in range(calls):
            next_due()

    def floor() -> None:
        for _ in range(calls):
            heap[0]  # the peek itself is what is measured

    t_tl, t_floor = paired(tl, floor, reps)
    us = [s / calls * 1e6 for s in t_tl]
    floor_us = [s / calls * 1e6 for s in t_floor]
    return Row(f"W5 next-due lookup ({len(heap):,} jobs)", "us", wall(us), wall(floor_us),
               "heap[0]", higher_is_better=False, ratios=per_round(t_tl, t_floor),
               target="O(1)")


def _reschedule(engine: Engine, n: int, reps: int) -> Row:
    """Pop the due job and push it back at its next time: the scheduler's internal step
    (``_collect_due``: trigger, jitter, misfire check, heap push), without running tasks."""
    clocks = [FakeClock(T0) for _ in range(reps + 1)]
    pool = [TaskScheduler(engine=engine, clock=c, state=MemoryScheduleState()) for c in clocks]
    tasks = [Task(f"job{i}") for i in range(n)]
    for sched, clock in zip(pool, clocks, strict=True):
        for t in tasks:
            sched.schedule_recurring(t, 60)
        clock.advance(60)

    def tl() -> None:
        sched = pool.pop()
        now = sched.clock.time()
        heap, pop, collect, jobs = sched._heap, heapq.heappop, sched._collect_due, sched._jobs
        for _ in range(n):
            collect(jobs[pop(heap)[2]], now)

    def floor() -> None:
        heap = [(60.0, i, None) for i in range(n)]
        replace = heapq.heapreplace
        for i in range(n):
            when, _, item = heap[0]
            replace(heap, (when + 60.0, n + i, item))

    t_tl, t_floor = paired(tl, floor, reps)
    us = [s / n * 1e6 for s in t_tl]
    floor_us = [s / n * 1e6 for s in t_floor]
    return Row(f"W5 pop + reschedule ({n:,} jobs)", "us", wall(us), wall(floor_us),
               "heapq.heapreplace", higher_is_better=False,
               ratios=per_round(t_tl, t_floor), target="APScheduler 5.5 us")


def _cron(n: int, reps: int, zone: str | None) -> Row:
    trigger = CronTrigger(CRON, zone)

    def tl() -> None:
        after = T0
        nxt = trigger.next_fire_time
        for _ in range(n):
            after = nxt(after)  # type: ignore[assignment]

    def floor() -> None:
        it = CronSim(CRON, T0.replace(tzinfo=None))
        for _ in range(n):
            next(it)

    t_tl, t_floor = paired(tl, floor, reps)
    where = zone or "UTC"
    return Row(f"W5 cron next-fire '{CRON}' ({where})", "computations/s", rate(n, t_tl),
               rate(n, t_floor), "cronsim", ratios=per_round(t_tl, t_floor),
               target=">= 100,000/s" if zone is None else "",
               min_value=100_000 if zone is None else None)


class _Lateness:
    def __init__(self) -> None:
        self.late: list[float] = []

    @hookimpl
    def taskloom_schedule_fire(self, job: Any, scheduled_for: datetime,
                               fired_at: datetime) -> None:
        self.late.append((fired_at - scheduled_for).total_seconds() * 1e3)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def _lateness(fires: int, spacing: float, reps: int) -> Row:
    """Jobs due every ``spacing`` seconds on the real clock; p99 of (fired - due)."""
    recorder = _Lateness()
    plugins = taskloom.load_plugins(plugins=[recorder])
    engine = Engine(plugins=plugins)

    def tl() -> float:
        recorder.late.clear()
        sched = TaskScheduler(engine=engine, state=MemoryScheduleState())
        sched.start()
        start = datetime.now(UTC) + timedelta(seconds=0.05)
        for i in range(fires):
            sched.add_task(Task(f"t{i}"), start + timedelta(seconds=i * spacing))
        deadline = time.monotonic() + fires * spacing + 5
        while len(recorder.late) < fires and time.monotonic() < deadline:
            time.sleep(0.01)
        sched.shutdown()
        return _p99(recorder.late)

    def floor() -> float:
        wake = threading.Event()
        start = time.time() + 0.05
        late = []
        for i in range(fires):
            due = start + i * spacing
            wait = due - time.time()
            if wait > 0:
                wake.wait(wait)
            late.append((time.time() - due) * 1e3)
        return _p99(late)

    tl()
    floor()
    ours: list[float] = []
    base: list[float] = []
    sides = [(tl, ours), (floor, base)]
    for r in range(reps):
        for side, out in sides[r % 2:] + sides[:r % 2]:
            gc.collect()
            out.append(side())
    return Row(f"W5 fire lateness, p99 of {fires} fires", "ms", wall(ours), wall(base),
               "Event.wait loop", higher_is_better=False, ratios=per_round(ours, base),
               target="within 10 ms", max_value=10)


def rows(quick: bool) -> list[Row]:
    reps = 3 if quick else 5
    out: list[Row] = []
    register, filled = _register(10_000, reps)
    out.append(register)
    out.append(_peek(filled[-1], reps, 20_000 if quick else 200_000))
    engine = Engine(plugins=taskloom.load_plugins())
    out.append(_reschedule(engine, 2_000 if quick else 10_000, reps))
    n = 20_000 if quick else 100_000
    out.append(_cron(n, reps, None))
    out.append(_cron(n // 2, reps, "Europe/Berlin"))
    out.append(_lateness(50 if quick else 200, 0.002 if quick else 0.005, 3 if quick else 5))
    return out


if __name__ == "__main__":
    import sys

    for row in rows("--quick" in sys.argv):
        ratio = row.ratio_text()
        base = row.baseline.fmt(2) if row.baseline else ""
        print(f"{row.workload:55} {row.taskloom.fmt(2):>30} {row.unit:15} vs "
              f"{row.baseline_name} {base} {ratio} target {row.target}")
