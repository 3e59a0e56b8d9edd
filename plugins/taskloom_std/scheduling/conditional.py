"""The ``conditional`` trigger: a predicate polled every ``poll`` seconds."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from taskloom.kernel.errors import ConfigError

log = logging.getLogger("taskloom.scheduler")

# Polls fall on k * poll since the epoch: k must stay exact in a float, and the polls must
# stay inside the calendar (the year 9999).
_MIN_POLL = 0.001
_MAX_POLL = 100 * 365.25 * 86400


class ConditionalTrigger:
    """Polls ``condition()`` every ``poll`` seconds; fires on each false -> true edge.

    With ``repeat`` it fires at every poll where the condition holds. A condition that raises
    counts as false (and is logged). ``once`` removes the job after its first fire, which is
    what :meth:`TaskScheduler.add_conditional_task` documents.

    Polls fall on a grid of whole multiples of ``poll`` since the epoch, so schedulers in
    several processes poll at the same instants and can claim a fire by its poll time.
    """

    kind = "conditional"
    jitter = 0.0

    def __init__(
        self,
        condition: Callable[[], object],
        poll: timedelta | float = 1.0,
        *,
        repeat: bool = False,
        once: bool = False,
    ) -> None:
        if not callable(condition):
            raise ConfigError(f"conditional trigger: condition must be callable, got {condition!r}")
        seconds = poll.total_seconds() if isinstance(poll, timedelta) else poll
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
                _MIN_POLL <= seconds <= _MAX_POLL):
            raise ConfigError(f"conditional trigger: poll must be > 0 seconds: from "
                              f"{_MIN_POLL:g}s to a century ({_MAX_POLL:.0f}s), got {poll!r}")
        seconds = float(seconds)
        self.condition = condition
        self.poll = timedelta(seconds=seconds)
        self._step = seconds
        self.repeat = repeat
        self.once = once
        self._last = False

    def __repr__(self) -> str:
        name = getattr(self.condition, "__name__", repr(self.condition))
        return f"ConditionalTrigger({name}, poll={self.poll.total_seconds():g}s)"

    def first_fire_time(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(self.first_fire_ts(now.timestamp()), timezone.utc)

    def next_fire_time(self, after: datetime) -> datetime:
        return datetime.fromtimestamp(self.next_fire_ts(after.timestamp()), timezone.utc)

    def first_fire_ts(self, now: float) -> float:
        """The first poll at or after ``now``."""
        step = self._step
        k = math.ceil(now / step)
        if (k - 1) * step >= now:  # float rounding
            k -= 1
        return k * step

    def next_fire_ts(self, after: float) -> float:
        """The first poll strictly after ``after``: always ``k * poll`` for a whole ``k``, so
        every process computes the very same float for the same poll."""
        step = self._step
        k = math.floor(after / step) + 1
        if k * step <= after:  # float rounding
            k += 1
        return k * step

    def check(self) -> bool:
        """Evaluate the condition now; True when the job should fire."""
        try:
            value = bool(self.condition())
        except Exception:
            log.exception("condition %r raised; treated as false", self.condition)
            value = False
        fire = value and (self.repeat or not self._last)
        self._last = value
        return fire
