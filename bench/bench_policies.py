"""Error policies under load: W4 on the thread executor and a retry storm.

* W4 (200 x ``time.sleep(0.01)``, 50 threads): taskloom with the default plugins (the
  policy plugins included) against floor B-cb, wall seconds, in the same rounds.
* Retry storm: 1,000 tasks that each fail twice and succeed on the third attempt, backoff 0.
  Against a thread pool whose function retries in a loop (the floor for this shape). The
  workers' busy time (their lifetime minus the time they waited for work) is compared with
  the time spent in task bodies: the gap is the engine's per-attempt cost, never a sleep. A
  second storm with a 5 ms backoff shows the waits on the engine's timer: the wall time grows,
  the workers' busy time does not.
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import Row, Stat, compare, paired
from workloads import fan_out, floor_b_cb, sleepy, taskloom_runner

from taskloom import Engine, Task, hookimpl, load_plugins
from taskloom_std.executors.thread import ThreadExecutor

FAILURES = 2


class _TimedCondition(threading.Condition):
    """Adds up the time threads spend waiting on it (idle workers)."""

    def __init__(self, lock: Any) -> None:
        super().__init__(lock)
        self.waited = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        t0 = time.perf_counter()
        try:
            return super().wait(timeout)
        finally:
            self.waited += time.perf_counter() - t0  # under the lock: no race


class TimedThreadExecutor(ThreadExecutor):
    """The thread executor, measuring how long its workers live and how long they idle."""

    name = "timed-thread"

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        # Workers and the dispatcher share one lock, as in ThreadExecutor; only the workers'
        # condition is timed.
        lock = threading.Lock()
        self._cond = _TimedCondition(lock)
        self._ready = threading.Condition(lock)
        self.lifetime = 0.0
        self._life_lock = threading.Lock()

    def _worker(self) -> None:
        t0 = time.perf_counter()
        try:
            super()._worker()
        finally:
            with self._life_lock:
                self.lifetime += time.perf_counter() - t0

    @property
    def busy(self) -> float:
        return self.lifetime - self._cond.waited


class _Executors:
    def __init__(self) -> None:
        self.made: list[TimedThreadExecutor] = []

    def make(self, **options: Any) -> TimedThreadExecutor:
        ex = TimedThreadExecutor(**options)
        self.made.append(ex)
        return ex

    @hookimpl
    def taskloom_register(self, registry: Any) -> None:
        registry.add("executor", "timed-thread", self.make)


def _storm_tasks(n: int, delay: float, body_time: list[float]) -> list[Task]:
    lock = threading.Lock()

    def make(i: int) -> Task:
        calls = [0]

        def body() -> int:
            t0 = time.perf_counter()
            calls[0] += 1
            failed = calls[0] <= FAILURES
            spent = time.perf_counter() - t0
            with lock:
                body_time[0] += spent
            if failed:
                raise ConnectionError(f"attempt {calls[0]}")
            return i

        return Task(f"t{i}", fn=body,
                    retry={"max_retries": FAILURES, "backoff": "fixed", "base_delay": delay})

    return [make(i) for i in range(n)]


def _storm(engine: Engine, executors: _Executors, n: int, delay: float) -> dict[str, float]:
    body_time = [0.0]
    tasks = _storm_tasks(n, delay, body_time)
    executors.made.clear()
    t0 = time.perf_counter()
    summary = engine.run(tasks)
    seconds = time.perf_counter() - t0
    if not summary.ok or any(t.attempts != FAILURES + 1 for t in tasks):
        raise RuntimeError(f"retry storm went wrong: {summary.counts}")
    busy = sum(ex.busy for ex in executors.made)
    return {"wall": seconds, "busy": busy, "body": body_time[0]}


def _inline_retry_floor(n: int, workers: int) -> None:
    """A thread pool whose function retries in a loop: no states, no policies."""

    def make(i: int) -> Any:
        calls = [0]

        def body() -> int:
            calls[0] += 1
            if calls[0] <= FAILURES:
                raise ConnectionError(f"attempt {calls[0]}")
            return i

        def with_retry() -> int:
            for attempt in range(FAILURES + 1):
                try:
                    return body()
                except ConnectionError:
                    if attempt == FAILURES:
                        raise
            raise AssertionError("unreachable")

        return with_retry

    with ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(make(i)) for i in range(n)]:
            fut.result()


def _w4(reps: int) -> Row:
    graph = fan_out(200)
    run = taskloom_runner(workers=50)
    t_tl, t_b = paired(functools.partial(run, graph, sleepy),
                       functools.partial(floor_b_cb, graph, sleepy, 50), reps)
    return compare("W4 sleep-bound, policy plugins loaded (200 x 10 ms, 50 threads)", None,
                   t_tl, t_b, "B-cb", target="within 1.25x", min_ratio=1 / 1.25)


def _storm_rows(reps: int, n: int) -> list[Row]:
    workers = 2
    executors = _Executors()
    engine = Engine(plugins=load_plugins(plugins=[executors]), executor="timed-thread",
                    max_workers=workers)
    samples: list[dict[str, float]] = []

    def storm() -> None:
        samples.append(_storm(engine, executors, n, 0.0))

    t_tl, t_floor = paired(storm, functools.partial(_inline_retry_floor, n, workers), reps)
    timed = samples[-reps:]
    attempts = n * (FAILURES + 1)
    busy = [s["busy"] * 1000 for s in timed]
    body_ms = statistics.median(s["body"] for s in timed) * 1000
    per_attempt = statistics.median(busy) * 1000 / attempts
    delayed = _storm(engine, executors, n, 0.005)
    rows = [
        compare(f"retry storm ({n:,} tasks x {FAILURES + 1} attempts, backoff 0, "
                f"{workers} threads)", n, t_tl, t_floor, "pool + inline retry loop",
                note="every failed attempt goes through the policies and back to the queue"),
        Row("retry storm: workers' busy time", "ms",
            Stat(statistics.median(busy), min(busy), max(busy)), higher_is_better=False,
            note=(f"task bodies {body_ms:.1f} ms; engine {per_attempt:.0f} us per attempt; "
                  f"with a 5 ms backoff: wall {delayed['wall'] * 1000:.0f} ms, busy "
                  f"{delayed['busy'] * 1000:.0f} ms, where workers sleeping through the "
                  f"backoffs would be busy >= {n * FAILURES * 5:,} ms")),
    ]
    return rows


def rows(quick: bool) -> list[Row]:
    reps = 3 if quick else 5
    return [_w4(reps), *_storm_rows(reps, 300 if quick else 1_000)]


if __name__ == "__main__":
    for row in rows(quick=True):
        base = f" vs {row.baseline_name} {row.baseline.fmt(3)}" if row.baseline else ""
        ratio = f" ratio {row.ratio_text()}" if row.ratio else ""
        print(f"{row.workload}: {row.taskloom.fmt(3)} {row.unit}{base}{ratio} {row.note}")
