"""Per-tag concurrency limits and start-rate limits (token buckets), consulted at dispatch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskloom.clock import Clock
from taskloom.errors import ConfigError
from taskloom.task import Task


def _parse_rate(tag: str, spec: Any) -> tuple[int, float]:
    if isinstance(spec, Mapping):
        n, period = spec.get("n", spec.get("limit")), spec.get("period", 1.0)
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        n, period = spec
    else:
        raise ConfigError(f"rate_limits.{tag}: expected {{n = N, period = SECONDS}}, got {spec!r}")
    if not isinstance(n, int) or n < 1 or not isinstance(period, (int, float)) or period <= 0:
        raise ConfigError(f"rate_limits.{tag}: n must be >= 1 and period > 0, got {spec!r}")
    return n, float(period)


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, n: int, period: float, now: float) -> None:
        self.capacity = float(n)
        self.rate = n / period
        self.tokens = float(n)
        self.stamp = now

    def take(self, now: float) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class TagLimiter:
    """Admits a task to start only while every one of its tags is under its limits.

    ``admit`` returns True (admitted: counters taken), False (a tag is at its concurrency
    limit: the task is parked here and handed back by ``release``), or the seconds until a
    rate limit allows it (the engine re-queues it then). Called under the run's lock.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        rate_limits: Mapping[str, Any],
        clock: Clock,
    ) -> None:
        for tag, n in limits.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"limits.{tag}: must be a positive integer, got {n!r}")
        self.limits = dict(limits)
        self.clock = clock
        now = clock.monotonic()
        self.buckets = {tag: _Bucket(*_parse_rate(tag, spec), now)
                        for tag, spec in rate_limits.items()}
        self.running: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.peak: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.parked: dict[str, list[Task]] = {tag: [] for tag in self.limits}
        self._admitted: set[int] = set()

    def admit(self, task: Task) -> bool | float:
        tags = task.tags
        if not tags:
            return True
        limited = [t for t in tags if t in self.limits]
        for tag in limited:
            if self.running[tag] >= self.limits[tag]:
                self.parked[tag].append(task)
                return False
        if self.buckets:
            now = self.clock.monotonic()
            for tag in tags:
                bucket = self.buckets.get(tag)
                if bucket is not None:
                    wait = bucket.take(now)
                    if wait > 0:
                        return wait
        for tag in limited:
            n = self.running[tag] + 1
            self.running[tag] = n
            if n > self.peak[tag]:
                self.peak[tag] = n
        if limited:
            self._admitted.add(id(task))
        return True

    def release(self, task: Task) -> list[Task]:
        """An admitted attempt of ``task`` ended; return parked tasks that may try again."""
        if id(task) not in self._admitted:
            return []
        self._admitted.discard(id(task))
        woken: list[Task] = []
        for tag in task.tags:
            if tag in self.limits:
                self.running[tag] -= 1
                if self.parked[tag]:
                    woken.extend(self.parked[tag])
                    self.parked[tag].clear()
        return woken
