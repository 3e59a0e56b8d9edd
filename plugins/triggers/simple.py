"""The ``date`` and ``interval`` triggers."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

from taskloom.errors import ConfigError

UTC = timezone.utc


def as_utc(value: datetime | str | float, what: str) -> datetime:
    """An aware UTC datetime from a datetime, an ISO string or epoch seconds.

    A naive datetime (or an ISO string without an offset) is read as local time.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{what}: not an ISO datetime: {value!r}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, datetime):
        raise ConfigError(f"{what}: expected a datetime, got {value!r}")
    if value.tzinfo is None:
        value = value.astimezone()  # local time, by the documented rule
    return value.astimezone(UTC)


def _has_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return True  # let as_utc report it


def as_seconds(value: timedelta | float, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError(f"{what}: expected seconds or a timedelta, got {value!r}")
    return float(seconds)


class DateTrigger:
    """Fires once, at ``at``. A time already past is due at once (late by the difference).

    A naive ``at`` is read in ``timezone`` when given (an IANA name), else as local time.
    ``run_date`` is another name for ``at``.
    """

    kind = "date"

    def __init__(
        self,
        at: datetime | str | float | None = None,
        *,
        run_date: datetime | str | float | None = None,
        timezone: str | None = None,
        jitter: float = 0.0,
    ) -> None:
        when = at if at is not None else run_date
        if when is None:
            raise ConfigError("date trigger: needs a time (at)")
        if timezone is not None:
            from taskloom.plugins.triggers.cron import localize, resolve_timezone

            if isinstance(when, str):
                when = as_utc(when, "date trigger") if _has_offset(when) else \
                    datetime.fromisoformat(when)
            if isinstance(when, datetime) and when.tzinfo is None:
                when = localize(when, resolve_timezone(timezone, "date trigger"))
        self.at = as_utc(when, "date trigger")
        self.jitter = float(jitter)
        if self.jitter < 0:
            raise ConfigError("date trigger: jitter must be >= 0")

    def __repr__(self) -> str:
        return f"DateTrigger({self.at.isoformat()})"

    def first_fire_time(self, now: datetime) -> datetime:
        return self.at

    def next_fire_time(self, after: datetime) -> datetime | None:
        return self.at if self.at > after else None


class IntervalTrigger:
    """Fires every ``interval``: at ``start``, ``start + interval``, ... up to ``end``.

    Without ``start`` the first fire is one interval after the job is added. ``jitter``
    delays each fire by a random ``[0, jitter)`` seconds drawn from ``rng``; the grid
    itself never drifts. Jitter must be shorter than the interval so runs keep their order.
    """

    kind = "interval"

    def __init__(
        self,
        interval: timedelta | float | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        start: datetime | str | float | None = None,
        end: datetime | str | float | None = None,
        jitter: timedelta | float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if interval is None:
            total = seconds + 60 * minutes + 3600 * hours + 86400 * days
        elif type(interval) is int or type(interval) is float:
            total = interval
        else:
            total = as_seconds(interval, "interval trigger")
        if not 0 < total < math.inf:
            raise ConfigError(f"interval trigger: interval must be > 0 seconds, got {total!r}")
        self.seconds = float(total)
        self.start = self.end = None
        self._start_ts = self._end_ts = None
        if start is not None:
            self.start = as_utc(start, "interval trigger start")
            self._start_ts = self.start.timestamp()
        if end is not None:
            self.end = as_utc(end, "interval trigger end")
            self._end_ts = self.end.timestamp()
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ConfigError("interval trigger: end is before start")
        self.jitter = jitter if type(jitter) is float else as_seconds(jitter, "jitter")
        if self.jitter and not 0 < self.jitter < total:
            raise ConfigError(
                f"interval trigger: jitter must be >= 0 and shorter than the interval "
                f"({total:g}s), got {self.jitter:g}"
            )
        # Only jittered triggers draw numbers; a Random of their own would cost a urandom read.
        self.rng = rng if rng is not None else (random.Random() if self.jitter else None)

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def __repr__(self) -> str:
        return f"IntervalTrigger({self.seconds:g}s)"

    def first_fire_time(self, now: datetime) -> datetime | None:
        if self.start is None:
            return self._bounded(now + self.interval)
        if self.start >= now:
            return self._bounded(self.start)
        return self.next_fire_time(now)

    def first_fire_ts(self, now: float) -> float | None:
        """:meth:`first_fire_time` on epoch seconds (the scheduler's fast path)."""
        start = self._start_ts
        if start is None:
            first = now + self.seconds
        elif start >= now:
            first = start
        else:
            return self.next_fire_ts(now)
        end = self._end_ts
        return None if end is not None and first > end else first

    def next_fire_time(self, after: datetime) -> datetime | None:
        if self.start is None:
            return self._bounded(after + self.interval)
        ts = self.next_fire_ts(after.timestamp())
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    def next_fire_ts(self, after: float) -> float | None:
        """:meth:`next_fire_time` on epoch seconds (the scheduler's fast path)."""
        start = self._start_ts
        if start is None:
            nxt = after + self.seconds
        elif after < start:
            nxt = start
        else:
            nxt = start + (math.floor((after - start) / self.seconds) + 1) * self.seconds
            if nxt <= after:  # float rounding on huge spans
                nxt += self.seconds
        end = self._end_ts
        return None if end is not None and nxt > end else nxt

    def _bounded(self, when: datetime) -> datetime | None:
        return None if self.end is not None and when > self.end else when
