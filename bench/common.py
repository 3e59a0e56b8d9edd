"""Shared measuring for the benchmark suite: every side in one process, interleaved rounds.

A shared machine drifts by up to 2x between processes and by tens of percent within one, so
only figures taken side by side count: a warm-up of every side, then rounds in which every
side runs once, the side that goes first rotating from round to round, with a full garbage
collection before each timed side (so one side's garbage is not collected on the other's
time). A ratio is the median of the per-round ratios, and its range is their min and max.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass
class Stat:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(statistics.median(values), min(values), max(values))

    def fmt(self, digits: int = 0) -> str:
        f = f"{{:,.{digits}f}}"
        return f"{f.format(self.median)} [{f.format(self.low)}..{f.format(self.high)}]"


@dataclass
class Row:
    """One line of the benchmark table: taskloom against a baseline in the same run.

    ``ratios`` are the per-round ratios (baseline time / taskloom time for the same work, so
    > 1 always means taskloom is better) when both sides ran in the same rounds. A target is
    checked on the median ratio (``min_ratio``) or on taskloom's own median (``max_value``,
    ``min_value``); ``target`` is its text.
    """

    workload: str
    unit: str
    taskloom: Stat
    baseline: Stat | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    target: str = ""
    note: str = ""
    ratios: list[float] | None = None
    min_ratio: float | None = None
    max_value: float | None = None
    min_value: float | None = None

    @property
    def ratio(self) -> float | None:
        """taskloom relative to the baseline, > 1 always meaning taskloom is better."""
        if self.ratios:
            return statistics.median(self.ratios)
        if self.baseline is None:
            return None
        if self.higher_is_better:
            return self.taskloom.median / self.baseline.median
        return self.baseline.median / self.taskloom.median

    def ratio_text(self) -> str:
        if self.ratios:
            return f"{self.ratio:.2f}x [{min(self.ratios):.2f}..{max(self.ratios):.2f}]"
        return "-" if self.ratio is None else f"{self.ratio:.2f}x"

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None: the row has no checked target)."""
        checks: list[bool] = []
        if self.min_ratio is not None and self.ratio is not None:
            checks.append(self.ratio >= self.min_ratio)
        if self.max_value is not None:
            checks.append(self.taskloom.median < self.max_value)
        if self.min_value is not None:
            checks.append(self.taskloom.median >= self.min_value)
        return all(checks) if checks else None

    def status(self) -> str:
        met = self.met
        return "" if met is None else ("met" if met else "not yet")


def interleaved(sides: Mapping[str, Callable[[], object]], rounds: int = 5,
                warmup: int = 1) -> dict[str, list[float]]:
    """Wall seconds of every side in each of ``rounds`` rounds, after ``warmup`` rounds.

    Round ``r`` starts with side ``r mod len(sides)`` and goes on in order, so each side
    leads in turn; ``gc.collect()`` runs before each timed side, outside its time.
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = sides[name]
            gc.collect()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def paired(a: Callable[[], object], b: Callable[[], object], reps: int = 5,
           warmup: int = 1) -> tuple[list[float], list[float]]:
    """:func:`interleaved` with two sides: A B, B A, A B, ... with a collection before each."""
    times = interleaved({"a": a, "b": b}, reps, warmup)
    return times["a"], times["b"]


def measure(fn: Callable[[], object], reps: int = 5, warmup: int = 1) -> list[float]:
    """Wall seconds of ``reps`` calls of ``fn`` after ``warmup`` uncounted ones."""
    return interleaved({"fn": fn}, reps, warmup)["fn"]


def per_round(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """Per-round ratios of the same work's times: theirs / ours (> 1: ours is faster)."""
    return [b / a for a, b in zip(ours, theirs, strict=True)]


def rate(n: int, seconds: Sequence[float]) -> Stat:
    """Items per second from wall times: median, min and max."""
    return Stat.of([n / s for s in seconds])


def wall(seconds: Sequence[float]) -> Stat:
    return Stat.of(seconds)


def compare(workload: str, n: int | None, ours: Sequence[float], theirs: Sequence[float],
            baseline_name: str, **fields: object) -> Row:
    """A row from per-round times of taskloom and a baseline taken in the same rounds: tasks/s
    when ``n`` is given, wall seconds otherwise."""
    if n is None:
        return Row(workload, "wall s", wall(ours), wall(theirs), baseline_name,
                   higher_is_better=False, ratios=per_round(ours, theirs),
                   **fields)  # type: ignore[arg-type]
    return Row(workload, "tasks/s", rate(n, ours), rate(n, theirs), baseline_name,
               ratios=per_round(ours, theirs), **fields)  # type: ignore[arg-type]
