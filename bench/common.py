"""Shared measuring for the benchmark suite: same process, warm-up, repetitions, ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Stat:
    median: float
    low: float
    high: float

    def fmt(self, digits: int = 0) -> str:
        f = f"{{:,.{digits}f}}"
        return f"{f.format(self.median)} [{f.format(self.low)}..{f.format(self.high)}]"


@dataclass
class Row:
    """One line of the benchmark table: taskloom against a baseline in the same run."""

    workload: str
    unit: str
    taskloom: Stat
    baseline: Stat | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """taskloom relative to the baseline, >1 always meaning taskloom is better."""
        if self.baseline is None:
            return None
        if self.higher_is_better:
            return self.taskloom.median / self.baseline.median
        return self.baseline.median / self.taskloom.median


def measure(fn: Callable[[], object], reps: int = 5, warmup: int = 1) -> list[float]:
    """Wall seconds of ``reps`` calls of ``fn`` after ``warmup`` uncounted ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def paired(a: Callable[[], object], b: Callable[[], object], reps: int = 5,
           warmup: int = 1) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately (A B A B ...) so machine drift hits both alike."""
    for _ in range(warmup):
        a()
        b()
    ta, tb = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return ta, tb


def rate(n: int, seconds: list[float]) -> Stat:
    """Items per second from wall times: median, min and max."""
    rates = [n / s for s in seconds]
    return Stat(statistics.median(rates), min(rates), max(rates))


def wall(seconds: list[float]) -> Stat:
    return Stat(statistics.median(seconds), min(seconds), max(seconds))
