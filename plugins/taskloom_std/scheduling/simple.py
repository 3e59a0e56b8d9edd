"""The ``date`` and ``interval`` triggers."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from typing import ClassVar

from taskloom.kernel.errors import ConfigError
from taskloom_std.scheduling.cron import checked_jitter, localize, resolve_timezone

UTC = timezone.utc

#: Most distinct plain intervals :meth:`IntervalTrigger.shared` keeps.
_SHARED_MAX = 256
#: The longest interval: a century (any longer one would first fire past the year 9999).
MAX_INTERVAL = 100 * 365.25 * 86400
#: The shortest interval: a millisecond (the due-time grid must stay exact in a float).
MIN_INTERVAL = 0.001
# Earliest and latest instants a trigger accepts: a day inside datetime's range, so that
# reading them in any zone stays in range too.
_MIN_TS = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


def as_utc(value: object, what: str) -> datetime:
    """An aware UTC datetime from a datetime, an ISO string or epoch seconds.

    A naive datetime (or an ISO string without an offset) is read as local time. Anything
    else, or a time too close to the ends of the calendar (years 1 and 9999) to be read in
    every zone, is a :class:`ConfigError` naming ``what``.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{what}: not an ISO datetime: {value!r}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not _MIN_TS <= value <= _MAX_TS:
            raise ConfigError(f"{what}: expected epoch seconds between years 1 and 9999, "
                              f"got {value!r}")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, datetime):
        raise ConfigError(f"{what}: expected a datetime, an ISO string or epoch seconds, "
                          f"got {type(value).__name__} {value!r}")
    try:
        if value.tzinfo is None:
            value = value.astimezone()  # local time, by the documented rule
        result = value.astimezone(UTC)
        in_range = _MIN_TS <= result.timestamp() <= _MAX_TS
    except (OverflowError, ValueError, OSError):
        in_range = False
    if not in_range:
        raise ConfigError(f"{what}: {value.isoformat()} is too close to the ends of the "
                          "calendar (use a time between the years 1 and 9999)")
    return result


def _has_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return True  # let as_utc report it


def as_seconds(value: object, what: str) -> float:
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
            tz = resolve_timezone(timezone, "date trigger")
            if isinstance(when, str):
                when = as_utc(when, "date trigger: at") if _has_offset(when) else \
                    datetime.fromisoformat(when)
            if isinstance(when, datetime) and when.tzinfo is None:
                try:
                    when = localize(when, tz)
                except (OverflowError, ValueError):
                    raise ConfigError(
                        f"date trigger: at: {when.isoformat()} is too close to the ends of "
                        "the calendar (use a time between the years 1 and 9999)") from None
        self.at = as_utc(when, "date trigger: at")
        self.jitter = checked_jitter(jitter, "date trigger")
        if self.at.timestamp() + self.jitter > _MAX_TS:
            raise ConfigError("date trigger: at plus jitter ends past the year 9999")

    def __repr__(self) -> str:
        return f"DateTrigger({self.at.isoformat()})"

    def first_fire_time(self, now: datetime) -> datetime:
        return self.at

    def next_fire_time(self, after: datetime) -> datetime | None:
        return self.at if self.at > after else None


class IntervalTrigger:
    """Fires every ``interval``: at ``start``, ``start + interval``, ... up to ``end``.

    Without ``start`` the fires fall on a grid of whole multiples of the interval since the
    epoch (1970-01-01 UTC): the first is the next grid time after the job is added (at most
    one interval away), and every scheduler, in any process, computes the very same due
    times, so schedulers sharing a state claim the same runs and each runs once. ``jitter``
    delays each fire by a random ``[0, jitter)`` seconds drawn from ``rng``; the grid
    itself never drifts. Jitter must be shorter than the interval so runs keep their order.

    A trigger cannot be changed once built, so one instance can serve many jobs (see
    :meth:`shared`).
    """

    kind = "interval"
    # Schedulers hold thousands of these: slots keep each one small and quick to read.
    __slots__ = ("_end_ts", "_start_ts", "end", "jitter", "rng", "seconds", "start")
    _shared: ClassVar[dict[tuple[type, type, object], IntervalTrigger]] = {}

    seconds: float
    start: datetime | None
    end: datetime | None
    jitter: float
    rng: random.Random | None
    _start_ts: float | None
    _end_ts: float | None

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
            total = 0.0
            for unit, n, scale in (("seconds", seconds, 1), ("minutes", minutes, 60),
                                   ("hours", hours, 3600), ("days", days, 86400)):
                total += scale * as_seconds(n, f"interval trigger: {unit}")
        elif type(interval) is int or type(interval) is float:
            total = interval
        else:
            total = as_seconds(interval, "interval trigger")
        if not MIN_INTERVAL <= total <= MAX_INTERVAL:
            raise ConfigError(
                f"interval trigger: interval must be > 0 seconds and at most a century: "
                f"from {MIN_INTERVAL:g}s to {MAX_INTERVAL:.0f}s, got {total!r}")
        start_at = None if start is None else as_utc(start, "interval trigger start")
        end_at = None if end is None else as_utc(end, "interval trigger end")
        if start_at is not None and end_at is not None and end_at < start_at:
            raise ConfigError("interval trigger: end is before start")
        spread = jitter if type(jitter) is float else checked_jitter(jitter, "interval trigger")
        if spread and not 0 < spread < total:
            raise ConfigError(
                f"interval trigger: jitter must be >= 0 and shorter than the interval "
                f"({total:g}s), got {spread:g}"
            )
        init = object.__setattr__  # __setattr__ refuses: the trigger is immutable once built
        init(self, "seconds", float(total))
        init(self, "start", start_at)
        init(self, "end", end_at)
        init(self, "_start_ts", None if start_at is None else start_at.timestamp())
        init(self, "_end_ts", None if end_at is None else end_at.timestamp())
        init(self, "jitter", spread)
        # Only jittered triggers draw numbers; a Random of their own would cost a urandom read.
        init(self, "rng", rng if rng is not None else (random.Random() if spread else None))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"interval trigger: cannot set {name!r}, a trigger does not change once built "
            "(jobs may share it); make a new IntervalTrigger"
        )

    @classmethod
    def shared(cls, interval: timedelta | float) -> IntervalTrigger:
        """The trigger for a plain ``interval`` (no start, end or jitter), one instance per
        interval: ten thousand jobs every minute hold one trigger, not ten thousand.

        Sharing is safe because a trigger keeps no per-job state and cannot be changed.
        """
        # The value's type is part of the key: True == 1, but True is not an interval.
        key = (cls, type(interval), interval)
        try:
            trigger = cls._shared.get(key)
        except TypeError:  # unhashable: not an interval, as the constructor will say
            return cls(interval)
        if trigger is None:
            trigger = cls(interval)
            if len(cls._shared) < _SHARED_MAX:  # bounded: a program uses few intervals
                cls._shared[key] = trigger
        return trigger

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def __repr__(self) -> str:
        return f"IntervalTrigger({self.seconds:g}s)"

    def first_fire_time(self, now: datetime) -> datetime | None:
        ts = self.first_fire_ts(now.timestamp())
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    def first_fire_ts(self, now: float) -> float | None:
        """:meth:`first_fire_time` on epoch seconds (the scheduler's fast path)."""
        start = self._start_ts
        if start is None or start < now:
            return self.next_fire_ts(now)
        first = start
        end = self._end_ts
        if end is not None and first > end:
            return None
        return None if first > _MAX_TS - self.jitter else first

    def next_fire_time(self, after: datetime) -> datetime | None:
        ts = self.next_fire_ts(after.timestamp())
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    def next_fire_ts(self, after: float) -> float | None:
        """:meth:`next_fire_time` on epoch seconds (the scheduler's fast path)."""
        start = self._start_ts
        step = self.seconds
        if start is None:
            # k * step, the same float in every process for the same k (see the class doc).
            k = after // step + 1  # a whole number below 2**53: exact in a float
            nxt = k * step
            if nxt <= after:  # float rounding: the next k, never nxt + step (not k * step)
                nxt = (k + 1) * step
        elif after < start:
            nxt = start
        else:
            nxt = start + (math.floor((after - start) / step) + 1) * step
            if nxt <= after:  # float rounding on huge spans
                nxt += step
        end = self._end_ts
        if end is not None and nxt > end:
            return None
        # The calendar ends in the year 9999: a trigger with no time before then is done.
        return None if nxt > _MAX_TS - self.jitter else nxt
