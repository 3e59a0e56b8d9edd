"""Per-tag concurrency limits and start-rate limits (token buckets), consulted at dispatch.

Configuration: ``limits = {db = 2}`` (at most two tasks tagged ``db`` run at once) and
``rate_limits = {api = {n = 10, period = 1.0}}`` (at most 10 starts of ``api`` tasks per
second, with bursts of up to 10). A rate may also be written ``[n, period]`` or a bare ``n``
(per second).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from taskloom import hookimpl
from taskloom.kernel.clock import Clock
from taskloom.kernel.errors import ConfigError
from taskloom.kernel.states import TaskState
from taskloom.kernel.task import Task

_READY, _RETRYING = TaskState.READY, TaskState.RETRYING
_RATE_KEYS = frozenset({"n", "period"})
# A reservation due at ``t`` is honoured at ``t`` even if float rounding puts ``now`` a hair
# before it.
_EPSILON = 1e-9


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_rate(tag: str, spec: Any) -> tuple[int, float] | str:
    """``(n, period)``, or the problem with ``spec`` as a message."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - _RATE_KEYS)
        if unknown:
            return f"unknown key {unknown[0]!r}; expected n and period"
        if "n" not in spec:
            return "missing n (starts per period)"
        n, period = spec["n"], spec.get("period", 1.0)
    elif isinstance(spec, (tuple, list)):
        if len(spec) != 2:
            return f"expected [n, period], got {spec!r}"
        n, period = spec
    elif isinstance(spec, int) and not isinstance(spec, bool):
        n, period = spec, 1.0
    else:
        return f"expected {{n = N, period = SECONDS}}, got {spec!r}"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return f"n must be an integer >= 1, got {n!r}"
    if not _is_number(period) or not 0 < period < float("inf"):
        return f"period must be a number of seconds > 0, got {period!r}"
    return n, float(period)


def normalise_limits(
    limits: Any, rate_limits: Any
) -> tuple[dict[str, int], dict[str, tuple[int, float]]]:
    """Check both tables; return them as ``{tag: n}`` and ``{tag: (n, period)}``.

    Every problem is collected into one :class:`ConfigError`, each as ``limits.<tag>: ...``
    or ``rate_limits.<tag>: ...``.
    """
    problems: list[str] = []
    good_limits: dict[str, int] = {}
    good_rates: dict[str, tuple[int, float]] = {}
    for key, table in (("limits", limits), ("rate_limits", rate_limits)):
        if table is None:
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{key}: expected a table of tag = value, got {table!r}")
            continue
        for tag, value in table.items():
            if not isinstance(tag, str) or not tag:
                problems.append(f"{key}: a tag must be a non-empty string, got {tag!r}")
                continue
            if key == "limits":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    problems.append(f"limits.{tag}: must be an integer >= 1, got {value!r}")
                else:
                    good_limits[tag] = value
            else:
                rate = _parse_rate(tag, value)
                if isinstance(rate, str):
                    problems.append(f"rate_limits.{tag}: {rate}")
                else:
                    good_rates[tag] = rate
    if problems:
        raise ConfigError(problems)
    return good_limits, good_rates


class _Bucket:
    """A token bucket that may go into debt: a start that must wait reserves a future token."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, n: int, period: float, now: float) -> None:
        self.capacity = float(n)
        self.rate = n / period
        self.tokens = float(n)
        self.stamp = now

    def reserve(self, now: float) -> float:
        """Take a token; return 0.0 if it was there, else the seconds until it will be."""
        tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate) - 1.0
        self.tokens = tokens
        self.stamp = now
        return 0.0 if tokens >= -_EPSILON else -tokens / self.rate

    def refund(self) -> None:
        self.tokens = min(self.capacity, self.tokens + 1.0)


class TagLimiter:
    """Admits a task to start only while every one of its tags is under its limits.

    Called under the run's lock. ``admit`` returns True (admitted: counters taken), False (a
    tag is at its concurrency limit: the task is parked here), or the seconds until a rate
    limit allows it (its token is reserved; the engine offers the task again then).

    A parked task waits for a slot of its tag. When a slot frees (``release``) the oldest
    parked task still ready moves to ``woken``, which the engine serves before its queue, and
    holds that slot until it is offered again. A woken task that is no longer runnable when
    its turn comes is handed to ``discard``, which passes the slot on.
    """

    def __init__(
        self,
        limits: Mapping[str, int],
        rate_limits: Mapping[str, Any],
        clock: Clock,
    ) -> None:
        self.limits, rates = normalise_limits(limits, rate_limits)
        self.clock = clock
        now = clock.monotonic()
        self.buckets = {tag: _Bucket(n, period, now) for tag, (n, period) in rates.items()}
        self.running: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.peak: dict[str, int] = dict.fromkeys(self.limits, 0)
        self.parked: dict[str, deque[Task]] = {tag: deque() for tag in self.limits}
        self.woken: deque[Task] = deque()
        self._held: dict[str, int] = dict.fromkeys(self.limits, 0)  # slots kept for woken
        self._tickets: dict[int, str] = {}  # woken task -> the tag whose slot it holds
        self._admitted: dict[int, list[tuple[str, ...]]] = {}  # per attempt still running
        self._reserved: dict[int, tuple[float, tuple[_Bucket, ...]]] = {}  # due, buckets

    def admit(self, task: Task) -> bool | float:
        tags = task.tags
        if not tags:
            return True
        key = id(task)
        ticket = self._tickets.pop(key, None)
        if ticket is not None:
            self._held[ticket] -= 1
        limits = self.limits
        limited = tuple(sorted(t for t in tags if t in limits))
        running, held = self.running, self._held
        for tag in limited:
            if running[tag] + held[tag] >= limits[tag]:
                self._refund(key)
                self.parked[tag].append(task)
                if ticket is not None and ticket != tag:
                    self._wake(ticket)
                return False
        if self.buckets:
            wait = self._take_tokens(task, key)
            if wait > 0.0:
                if ticket is not None:
                    self._wake(ticket)
                return wait
        if limited:
            peak = self.peak
            for tag in limited:
                n = running[tag] + 1
                running[tag] = n
                if n > peak[tag]:
                    peak[tag] = n
            self._admitted.setdefault(key, []).append(limited)
        return True

    def release(self, task: Task) -> None:
        """An admitted attempt of ``task`` ended: free its slots and wake who waits for them."""
        key = id(task)
        stack = self._admitted.get(key)
        if not stack:
            return
        tags = stack.pop()
        if not stack:
            del self._admitted[key]
        for tag in tags:
            self.running[tag] -= 1
            self._wake(tag)

    def discard(self, task: Task) -> None:
        """``task`` was offered but can no longer run (cancelled): give up what it held."""
        key = id(task)
        ticket = self._tickets.pop(key, None)
        if ticket is not None:
            self._held[ticket] -= 1
            self._wake(ticket)
        self._refund(key)

    def _wake(self, tag: str) -> None:
        lane = self.parked.get(tag)
        if not lane:
            return
        room = self.limits[tag] - self.running[tag] - self._held[tag]
        while room > 0 and lane:
            task = lane.popleft()
            status = task.status
            if (status is not _READY and status is not _RETRYING) or id(task) in self._tickets:
                continue  # cancelled while parked, or already on its way
            self._tickets[id(task)] = tag
            self._held[tag] += 1
            self.woken.append(task)
            room -= 1

    def _take_tokens(self, task: Task, key: int) -> float:
        now: float = self.clock.monotonic()
        reserved = self._reserved.pop(key, None)
        if reserved is not None:
            due, _ = reserved
            if now >= due - _EPSILON:
                return 0.0
            self._reserved[key] = reserved  # offered early (run again by hand): keep waiting
            return due - now
        buckets = tuple(b for t in task.tags if (b := self.buckets.get(t)) is not None)
        if not buckets:
            return 0.0
        wait = max(b.reserve(now) for b in buckets)
        if wait > 0.0:
            self._reserved[key] = (now + wait, buckets)
        return wait

    def _refund(self, key: int) -> None:
        """Return reserved tokens of a task that will not start at its reserved time."""
        reserved = self._reserved.pop(key, None)
        if reserved is not None:
            for bucket in reserved[1]:
                bucket.refund()


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("limiter", "tags", TagLimiter)
