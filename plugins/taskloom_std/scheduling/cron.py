"""The ``cron`` trigger: cron expressions in an IANA time zone, with cron(8)'s DST rule.

Matching is cronsim's (standard cron: weekday 0 or 7 = Sunday, 1 = Monday; names ``MON``,
``JAN``; ``L`` last day of month, ``LW`` last weekday of month, ``5L`` last Friday, ``1#2``
second Monday). Six fields put **seconds first**: ``sec min hour dom month dow``. The
nicknames ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
and ``@hourly`` stand for their usual five fields.

The nearest-weekday form ``15W`` (cronsim has only ``LW``) is matched here, with the usual
rules: the weekday nearest the 15th, never leaving the month (``1W`` on a Saturday is Monday
the 3rd, ``31W`` on a Sunday is Friday the 29th), no run in a month without that day. As in
Quartz it stands alone in its field and needs ``*`` for the day of the week.

The expression is matched against local wall-clock times of the zone. Which instants those
are when daylight saving time starts or ends follows cron(8) (and cronsim), by the kind of
expression:

* **Fixed-time** expressions (neither the minute nor the hour field starts with ``*``:
  ``30 2 * * *``, ``0 1-5 * * *``, ``@daily``): a local time that does not exist (spring
  forward) runs **once**, at the first valid instant after the gap, and several missing times
  collapse into that one run; a local time that occurs twice (fall back) runs **once**, at
  its first occurrence.
* **Wall-clock** expressions (the minute or the hour field starts with ``*``: ``30 * * * *``,
  ``*/15 * * * *``, ``0 */2 * * *``, ``@hourly``) follow the clock on the wall: a skipped local
  time is not made up, and a repeated local time runs at both of its occurrences, so an
  hourly job runs once in every real hour.

``ambiguous`` (``"once"`` or ``"both"``) and ``nonexistent`` (``"shift"``: once right after
the gap; ``"skip"``: not at all) override the rule for repeated and missing local times.
"""

from __future__ import annotations

import calendar
import heapq
import re
from bisect import bisect_right
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from taskloom.kernel.errors import ConfigError

UTC = timezone.utc
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
# Larger than any UTC offset change (the largest in the tz database is 2 hours).
_MAX_SHIFT = timedelta(hours=3)

_FIELDS5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELDS6 = ("second", *_FIELDS5)
_AMBIGUOUS = ("once", "both")
_NONEXISTENT = ("shift", "skip")
#: cron(8)'s nicknames (``@reboot`` has no time and is refused).
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Longer than any IANA name (the longest is about 30 characters) and than a file name may be.
_MAX_ZONE_NAME = 255
_MAX_EXPRESSION = 1000
_MAX_JITTER = 100 * 365.25 * 86400
_NEAREST_WEEKDAY = re.compile(r"(\d{1,2})W", re.IGNORECASE)
# Leap days come back within eight years (2096 -> 2104): a month day not found in that many
# months is never found.
_MONTHS_SEARCHED = 12 * 8 + 1


def resolve_timezone(name: object, what: str = "") -> tzinfo:
    """An IANA zone by name (``Europe/Berlin``), a tzinfo as is, None as UTC.

    Anything else (a number, an unknown or over-long name, a folder of the zone database)
    is a :class:`ConfigError` naming ``what``.
    """
    if name is None:
        return UTC
    if isinstance(name, tzinfo):
        return name
    prefix = f"{what}: " if what else ""
    if not isinstance(name, str):
        raise ConfigError(
            f"{prefix}timezone must be an IANA time zone name such as 'Europe/Berlin', "
            f"got {type(name).__name__} {name!r}"
        )
    if name.upper() == "UTC":
        return UTC
    if len(name) <= _MAX_ZONE_NAME:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
            pass  # a folder, a bad path or an unreadable file: not a zone, said below
    shown = name if len(name) <= 60 else name[:57] + "..."
    raise ConfigError(
        f"{prefix}unknown time zone {shown!r} (use an IANA name such as 'Europe/Berlin')"
    )


def _bad_field(expression: str, parts: list[str], message: str) -> ConfigError:
    names = _FIELDS6 if len(parts) == 6 else _FIELDS5
    for i, name in enumerate(names):
        if message == f"Bad {name}" or (i == 0 and len(parts) == 6 and message == "Bad second"):
            return ConfigError(
                f"cron expression {expression!r}: field {i + 1} ({name}) is invalid: "
                f"{parts[i]!r}"
            )
    return ConfigError(f"cron expression {expression!r}: {message}")


def _parse(expression: object) -> tuple[CronSim, int | None, bool]:
    """The parsed expression, the day ``n`` of a nearest-weekday ``nW`` (else None), and
    whether it follows the wall clock across DST changes (its minute or hour field starts
    with ``*``, cron(8)'s test) rather than being a fixed-time expression.

    For ``nW`` cronsim parses the expression with ``*`` in the day-of-month field; the day
    itself is matched by :func:`nearest_weekday`.
    """
    if not isinstance(expression, str):
        raise ConfigError(
            f"cron expression must be a string such as '30 2 * * *', got "
            f"{type(expression).__name__} {expression!r}"
        )
    if len(expression) > _MAX_EXPRESSION:
        raise ConfigError(
            f"cron expression {expression[:40]!r}...: longer than {_MAX_EXPRESSION} characters"
        )
    if expression.strip().startswith("@"):
        nickname = expression.strip().lower()
        if nickname not in NICKNAMES:
            raise ConfigError(
                f"cron expression {expression!r}: unknown nickname (use one of "
                f"{', '.join(NICKNAMES)})"
            )
        expression = NICKNAMES[nickname]
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ConfigError(
            f"cron expression {expression!r}: expected 5 fields (minute hour day-of-month "
            f"month day-of-week) or 6 (second first), got {len(parts)}"
        )
    dom = len(parts) - 3
    nearest = None
    matched = _NEAREST_WEEKDAY.fullmatch(parts[dom])
    if matched:
        nearest = int(matched.group(1))
        if not 1 <= nearest <= 31:
            raise _bad_field(expression, parts, "Bad day-of-month")
        if parts[dom + 2] != "*":
            raise ConfigError(
                f"cron expression {expression!r}: field {dom + 1} (day-of-month) "
                f"{parts[dom]!r} needs '*' in field {dom + 3} (day-of-week), "
                f"got {parts[dom + 2]!r}"
            )
    text = " ".join([*parts[:dom], "*", *parts[dom + 1:]]) if nearest else expression
    try:
        sim = CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise _bad_field(expression, parts, str(exc)) from None
    except (ValueError, IndexError, KeyError) as exc:
        raise ConfigError(f"cron expression {expression!r}: {exc}") from None
    # Like cronsim's own check for "30 2": a day no allowed month has never runs.
    if nearest and nearest > max(calendar.monthrange(2000, m)[1] for m in sim.months):
        raise _bad_field(expression, parts, "Bad day-of-month")
    minute = len(parts) - 5
    wall = parts[minute].startswith("*") or parts[minute + 1].startswith("*")
    return sim, nearest, wall


def _choice(value: object, allowed: tuple[str, ...], key: str, where: str) -> str | None:
    if value is None or value in allowed:
        return value
    raise ConfigError(
        f"{where}: {key} must be {' or '.join(repr(a) for a in allowed)}, got {value!r}"
    )


def checked_jitter(value: object, where: str) -> float:
    """``jitter`` as seconds: a finite number >= 0, else a :class:`ConfigError`."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 <= value <= _MAX_JITTER):
        raise ConfigError(f"{where}: jitter must be a number of seconds from 0 to a century "
                          f"({_MAX_JITTER:.0f}), got {value!r}")
    return float(value)


def nearest_weekday(year: int, month: int, day: int) -> int | None:
    """The day of ``month`` that ``{day}W`` names: ``day`` itself on a weekday, else the
    nearest weekday in the same month; None when the month has no such day."""
    last = calendar.monthrange(year, month)[1]
    if day > last:
        return None
    weekday = calendar.weekday(year, month, day)
    if weekday == calendar.SATURDAY:
        return day - 1 if day > 1 else day + 2
    if weekday == calendar.SUNDAY:
        return day + 1 if day < last else day - 2
    return day


def _utc_naive(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    return dt.astimezone(UTC).replace(tzinfo=None)


class CronTrigger:
    """Fires at the instants a cron expression names in ``timezone`` (default UTC)."""

    kind = "cron"

    def __init__(
        self,
        expression: str,
        timezone: str | tzinfo | None = None,
        *,
        ambiguous: str | None = None,
        nonexistent: str | None = None,
        jitter: float = 0.0,
    ) -> None:
        self._template, self._nearest, self.wall_clock = _parse(expression)
        self.expression = expression
        where = f"cron expression {expression!r}"
        self.tz = resolve_timezone(timezone, where)
        self.timezone = timezone if isinstance(timezone, str) else str(self.tz)
        #: How a repeated local time runs ("once" or "both") and a skipped one ("shift":
        #: once right after the gap, "skip": not at all); by default cron(8)'s rule.
        self.ambiguous = _choice(ambiguous, _AMBIGUOUS, "ambiguous", where) or (
            "both" if self.wall_clock else "once")
        self.nonexistent = _choice(nonexistent, _NONEXISTENT, "nonexistent", where) or (
            "skip" if self.wall_clock else "shift")
        self.jitter = checked_jitter(jitter, where)
        self._utc = self.tz is UTC
        # The scheduler asks for the fire after the previous fire almost every time; keep
        # the iterator that produced it so that costs one step, not a fresh search.
        self._last: datetime | None = None
        self._iter: Iterator[datetime] | None = None
        tpl = self._template
        # Within a matching day the matches are the grid hours x minutes x seconds.
        self._hours = sorted(tpl.hours)
        self._minutes = sorted(tpl.minutes)
        self._seconds = sorted(tpl.seconds)
        self._day: date | None = None
        self._day_ok = False

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, timezone={self.timezone!r})"

    def _sim(self, start: datetime) -> CronSim:
        # A fresh parse costs far more than a step; copy the parsed fields instead.
        sim = CronSim.__new__(CronSim)
        sim.__dict__.update(self._template.__dict__)
        sim.dt = start.replace(microsecond=0)
        sim.skip_initial_tick = False
        sim.tick_direction = 1
        sim.fixup_tz = None
        return sim

    def _next_naive(self, after: datetime) -> datetime | None:
        """The first matching wall-clock time strictly after ``after`` (naive).

        Within a day the matches are the fixed hour x minute x second grid, searched by
        bisection on each field; cronsim says which days match and finds the next one.
        """
        day = after.date()
        if day != self._day:
            tpl = self._template
            self._day = day
            self._day_ok = day.month in tpl.months and (
                tpl.match_day(day) if self._nearest is None
                else day.day == nearest_weekday(day.year, day.month, self._nearest))
        if self._day_ok:
            found = self._next_time_of_day(after.hour, after.minute, after.second)
            if found is not None:
                h, m, sec = found
                return datetime(day.year, day.month, day.day, h, m, sec)
        if self._nearest is not None:
            nxt = self._next_nearest_day(day)
            if nxt is None:
                return None
            return datetime(nxt.year, nxt.month, nxt.day,
                            self._hours[0], self._minutes[0], self._seconds[0])
        midnight = datetime(day.year, day.month, day.day) + _DAY
        try:
            return next(self._sim(midnight - _SECOND))
        except StopIteration:
            return None

    def _next_nearest_day(self, day: date) -> date | None:
        """The first day after ``day`` that ``nW`` names, in a month the expression allows."""
        assert self._nearest is not None
        months = self._template.months
        year, month = day.year, day.month
        for _ in range(_MONTHS_SEARCHED):
            if month in months:
                found = nearest_weekday(year, month, self._nearest)
                if found is not None and (year, month, found) > (day.year, day.month, day.day):
                    return date(year, month, found)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            if year > 9999:
                break
        return None

    def _next_time_of_day(self, h: int, m: int, sec: int) -> tuple[int, int, int] | None:
        """The smallest grid time strictly after ``h:m:sec`` on the same day."""
        hours, minutes, seconds = self._hours, self._minutes, self._seconds
        if h in self._template.hours:
            if m in self._template.minutes:
                i = bisect_right(seconds, sec)
                if i < len(seconds):
                    return h, m, seconds[i]
            i = bisect_right(minutes, m)
            if i < len(minutes):
                return h, minutes[i], seconds[0]
        i = bisect_right(hours, h)
        if i < len(hours):
            return hours[i], minutes[0], seconds[0]
        return None

    def next_fire_time(self, after: datetime) -> datetime | None:
        """The first instant strictly after ``after`` (aware), as an aware UTC datetime."""
        if self._utc:
            if after.tzinfo is None:
                raise ValueError("after must be an aware datetime")
            if after.tzinfo is not UTC:
                after = after.astimezone(UTC)
            naive = self._next_naive(after.replace(tzinfo=None))
            return None if naive is None else naive.replace(tzinfo=UTC)
        if after.tzinfo is None:
            raise ValueError("after must be an aware datetime")
        if self._iter is not None and after == self._last:
            found = next(self._iter, None)
        else:
            self._iter = self._instants_zoned(after)
            found = next(self._iter, None)
        if found is None:
            self._iter = None
        self._last = found
        return found

    def iter_from(self, after: datetime) -> Iterator[datetime]:
        """Every fire instant after ``after``, in order (independent of the cached state)."""
        if self._utc:
            return self._instants_utc(after)
        return self._instants_zoned(after)

    def _naive_iter(self, start: datetime) -> Iterator[datetime]:
        nxt = self._next_naive(start)
        while nxt is not None:
            yield nxt
            nxt = self._next_naive(nxt)

    def _instants_utc(self, after: datetime) -> Iterator[datetime]:
        for naive in self._naive_iter(_utc_naive(after)):
            yield naive.replace(tzinfo=UTC)

    def _instants_zoned(self, after: datetime) -> Iterator[datetime]:
        tz = self.tz
        if after.tzinfo is None:  # one rule for every zone, as in the UTC path
            raise ValueError("after must be an aware datetime")
        after = after.astimezone(UTC)
        local = after.astimezone(tz)
        start = local.replace(tzinfo=None)
        both = self.ambiguous == "both"
        skip = self.nonexistent == "skip"
        if both:
            # Second occurrences of times earlier on the wall clock may still lie ahead.
            start -= _MAX_SHIFT
        last = after
        extras: list[datetime] = []  # second occurrences (ambiguous="both"), by instant
        for naive in self._naive_iter(start):
            first = naive.replace(tzinfo=tz, fold=0)
            second = naive.replace(tzinfo=tz, fold=1)
            off0, off1 = first.utcoffset(), second.utcoffset()
            if off0 == off1:
                primary = first.astimezone(UTC)
            elif first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
                if skip:
                    continue
                primary = _after_gap(naive, tz)
            else:
                primary = first.astimezone(UTC)
                if both:
                    heapq.heappush(extras, second.astimezone(UTC))
            while extras and extras[0] <= primary:
                extra = heapq.heappop(extras)
                if extra > last:
                    last = extra
                    yield extra
            if primary > last:
                last = primary
                yield primary
        while extras:  # the expression has no later time: what is left of the repeat
            extra = heapq.heappop(extras)
            if extra > last:
                last = extra
                yield extra


def localize(naive: datetime, tz: tzinfo) -> datetime:
    """A wall-clock time in ``tz`` as an aware UTC instant, by the DST policy above.

    A time in a spring-forward gap becomes the first valid instant after it; a time that
    occurs twice is its first occurrence.
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != naive.replace(tzinfo=None):
        return _after_gap(naive.replace(tzinfo=None), tz)
    return instant


def _after_gap(naive: datetime, tz: tzinfo) -> datetime:
    """The first valid instant after a local time that a spring-forward skipped."""
    probe = naive.replace(second=0)
    for _ in range(24 * 60):
        probe += _MINUTE
        aware = probe.replace(tzinfo=tz)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == probe:
            return aware.astimezone(UTC)
    raise ValueError(f"no valid local time after {naive} in {tz}")
