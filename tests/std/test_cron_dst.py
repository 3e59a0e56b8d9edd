"""Cron jobs across daylight-saving changes: exact fire times under a fake clock.

cron(8)'s rule: a fixed-time expression runs a local time that does not exist once at the
first valid instant after the gap, and a local time that occurs twice once (its first
occurrence) unless ``ambiguous="both"``; an expression whose minute or hour field starts
with ``*`` follows the wall clock (skipped times are not made up, repeated ones run again).
The independent minute-by-minute check of that rule is in ``test_cron_dst_walk``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import taskloom
from taskloom import FakeClock, Task, TaskScheduler, hookimpl

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


class Fires:
    def __init__(self) -> None:
        self.due: list[datetime] = []

    @hookimpl
    def taskloom_schedule_fire(self, job: Any, scheduled_for: datetime, fired_at: datetime) -> None:
        self.due.append(scheduled_for)


def drive(expression: str, tz: ZoneInfo, start: datetime, until: datetime,
          **options: Any) -> tuple[list[datetime], list[datetime]]:
    """Run a cron job from ``start`` to ``until`` by jumping the clock to each due time.

    Returns (fire times as seen by the scheduler, clock times the task body ran at), local.
    """
    clock = FakeClock(start)
    fires = Fires()
    plugins = taskloom.load_plugins(plugins=[fires])
    ran: list[datetime] = []
    task = Task("job", fn=lambda: ran.append(clock.now()))
    with TaskScheduler(clock=clock, plugins=plugins) as scheduler:
        job = scheduler.schedule_cron(task, expression, timezone=str(tz), **options)
        while job.next_fire_time is not None and job.next_fire_time <= until:
            clock.set(job.next_fire_time)
            assert scheduler.run_pending() == ["job"]
    assert [d.astimezone(UTC) for d in fires.due] == ran
    return [d.astimezone(tz) for d in fires.due], [r.astimezone(tz) for r in ran]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_berlin_spring_forward_missing_time_runs_once_at_next_valid_instant() -> None:
    due, _ = drive("30 2 * * *", BERLIN, utc(2024, 3, 29), utc(2024, 4, 2))
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 3, 29, 1, 30),  # 02:30 CET
        utc(2024, 3, 30, 1, 30),
        utc(2024, 3, 31, 1, 0),  # 02:30 does not exist: 03:00 CEST, once
        utc(2024, 4, 1, 0, 30),  # 02:30 CEST
    ]
    assert due[2] == local(BERLIN, 2024, 3, 31, 3, 0)


def test_berlin_fall_back_repeated_time_runs_once() -> None:
    due, _ = drive("30 2 * * *", BERLIN, utc(2024, 10, 26), utc(2024, 10, 29))
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 10, 26, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 0, 30),  # first 02:30 (CEST) only
        utc(2024, 10, 28, 1, 30),  # 02:30 CET
    ]


def test_berlin_fall_back_both_runs_the_repeated_time_twice() -> None:
    due, _ = drive("30 2 * * *", BERLIN, utc(2024, 10, 26), utc(2024, 10, 28),
                   ambiguous="both")
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 10, 26, 0, 30),
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 1, 30),  # 02:30 CET, the second occurrence
    ]
    assert due[1].fold == 0 and due[2] == local(BERLIN, 2024, 10, 27, 2, 30, fold=1)


def test_new_york_spring_forward_every_30_minutes() -> None:
    # 02:00-02:59 does not exist on 2024-03-10: 02:00 and 02:30 collapse into one run at 03:00.
    due, _ = drive("*/30 * * * *", NEW_YORK, utc(2024, 3, 10, 6, 0), utc(2024, 3, 10, 8, 0))
    assert [d.replace(tzinfo=None) for d in due] == [
        datetime(2024, 3, 10, 1, 30),
        datetime(2024, 3, 10, 3, 0),
        datetime(2024, 3, 10, 3, 30),
        datetime(2024, 3, 10, 4, 0),
    ]
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 7, 30),
        utc(2024, 3, 10, 8, 0),
    ]


def test_new_york_fall_back_hourly_runs_in_every_real_hour() -> None:
    due, _ = drive("0 * * * *", NEW_YORK, utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 8, 0))
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 11, 3, 5, 0),  # 01:00 EDT
        utc(2024, 11, 3, 6, 0),  # 01:00 EST: the wall clock shows 01:00 again
        utc(2024, 11, 3, 7, 0),  # 02:00 EST
        utc(2024, 11, 3, 8, 0),  # 03:00 EST
    ]


def test_new_york_fall_back_hourly_once_when_asked() -> None:
    due, _ = drive("0 * * * *", NEW_YORK, utc(2024, 11, 3, 4, 30), utc(2024, 11, 3, 8, 0),
                   ambiguous="once")
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 7, 0), utc(2024, 11, 3, 8, 0),
    ]


def test_berlin_spring_forward_hourly_fires_once_per_real_hour() -> None:
    # The case: 01:30 CET, then 03:30 CEST, not 03:00 and 03:30.
    due, _ = drive("30 * * * *", BERLIN, utc(2024, 3, 30, 23, 0), utc(2024, 3, 31, 3, 0))
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 3, 30, 23, 30), utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30),
        utc(2024, 3, 31, 2, 30),
    ]


def test_berlin_spring_forward_hourly_shift_when_asked() -> None:
    due, _ = drive("30 * * * *", BERLIN, utc(2024, 3, 31, 0, 0), utc(2024, 3, 31, 1, 45),
                   nonexistent="shift")
    assert [d.astimezone(BERLIN).replace(tzinfo=None) for d in due] == [
        datetime(2024, 3, 31, 1, 30), datetime(2024, 3, 31, 3, 0),
        datetime(2024, 3, 31, 3, 30),
    ]


def test_new_york_fall_back_both_every_20_minutes() -> None:
    due, _ = drive("*/20 1 * * *", NEW_YORK, utc(2024, 11, 3, 4, 0), utc(2024, 11, 3, 7, 0),
                   ambiguous="both")
    assert [d.astimezone(UTC) for d in due] == [
        utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 5, 20), utc(2024, 11, 3, 5, 40),  # EDT
        utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 6, 20), utc(2024, 11, 3, 6, 40),  # EST
    ]


def test_new_york_spring_forward_daily_at_2_30() -> None:
    due, _ = drive("30 2 * * *", NEW_YORK, utc(2024, 3, 9), utc(2024, 3, 12))
    assert [d.replace(tzinfo=None) for d in due] == [
        datetime(2024, 3, 9, 2, 30),
        datetime(2024, 3, 10, 3, 0),
        datetime(2024, 3, 11, 2, 30),
    ]


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_a_year_of_daily_jobs_has_one_run_per_day(tz: ZoneInfo) -> None:
    from taskloom_std.scheduling import CronTrigger

    trigger = CronTrigger("30 2 * * *", str(tz))
    after = utc(2024, 1, 1)
    days = []
    for _ in range(366):
        after = trigger.next_fire_time(after)  # type: ignore[assignment]
        days.append(after.astimezone(tz).date())
    assert len(set(days)) == 366
    assert days[0] == datetime(2024, 1, 1).date() and days[-1] == datetime(2024, 12, 31).date()


def test_stateless_query_inside_the_repeated_hour() -> None:
    from taskloom_std.scheduling import CronTrigger

    once = CronTrigger("*/20 1 * * *", "America/New_York", ambiguous="once")
    both = CronTrigger("*/20 1 * * *", "America/New_York")
    assert both.ambiguous == "both"  # its minute field starts with '*': the wall clock
    # 01:10 EDT: the next run is 01:20 EDT for both policies.
    assert once.next_fire_time(utc(2024, 11, 3, 5, 10)) == utc(2024, 11, 3, 5, 20)
    assert both.next_fire_time(utc(2024, 11, 3, 5, 10)) == utc(2024, 11, 3, 5, 20)
    # 01:50 EDT: "once" waits for the next day; "both" runs 01:00 EST next.
    assert once.next_fire_time(utc(2024, 11, 3, 5, 50)) == utc(2024, 11, 4, 6, 0)
    assert both.next_fire_time(utc(2024, 11, 3, 5, 50)) == utc(2024, 11, 3, 6, 0)
    # 01:10 EST: "once" already ran 01:20 at EDT; "both" runs 01:20 EST.
    assert once.next_fire_time(utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 4, 6, 0)
    assert both.next_fire_time(utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 3, 6, 20)


# -- the rule, checked independently: real time walked minute by minute ------------------------
WALK_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago",
              "Australia/Lord_Howe"]
#: (expression, kind): fixed-time, wildcard-hour, step and range expressions.
WALK_EXPRESSIONS = [
    ("30 2 * * *", "fixed"),
    ("45 1 * * *", "fixed"),
    ("15 0 * * *", "fixed"),
    ("50 23 * * *", "fixed"),
    ("30 * * * *", "wildcard hour"),
    ("0 * * * *", "wildcard hour"),
    ("*/20 * * * *", "step"),
    ("0 */2 * * *", "step"),
    ("7,37 */3 * * *", "step"),
    ("0 0-3 * * *", "range"),
    ("*/30 0-3 * * *", "range"),
    ("15-45/15 1-2 * * *", "range"),
]
_MIN = timedelta(minutes=1)


def _field(text: str, top: int) -> set[int]:
    """The values a minute (``top`` 59) or hour (23) field allows, parsed here, not by cron."""
    allowed: set[int] = set()
    for item in text.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            low, high = 0, top
        elif "-" in span:
            low, high = (int(v) for v in span.split("-"))
        else:
            low = int(span)
            high = top if step else low
        allowed.update(range(low, high + 1, int(step) if step else 1))
    return allowed


def _transitions(tz: ZoneInfo, year: int) -> list[datetime]:
    """The instants the zone's UTC offset changes in ``year`` (a walk in 30-minute steps)."""
    found = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    before = t.astimezone(tz).utcoffset()
    while t.year == year:
        t += timedelta(minutes=30)
        offset = t.astimezone(tz).utcoffset()
        if offset != before:
            found.append(t)
            before = offset
    return found


def _expected(expression: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """cron(8)'s rule by walking real time a minute at a time, reading the wall clock.

    Fixed-time expressions (minute and hour fields not starting with ``*``): a matching wall
    time fires at its first occurrence only; matching wall times the clock jumped over fire
    once, at the first minute after the jump. Otherwise: fire whenever the wall clock shows
    a matching time, so jumped-over times never fire and repeated ones fire again.
    """
    minute, hour = expression.split()[:2]
    minutes, hours = _field(minute, 59), _field(hour, 23)
    wall = minute.startswith("*") or hour.startswith("*")

    def matches(when: datetime) -> bool:
        return when.minute in minutes and when.hour in hours

    fires: list[datetime] = []
    seen: set[datetime] = set()
    before = start.astimezone(tz).replace(tzinfo=None)
    t = start + _MIN
    while t <= end:
        shown = t.astimezone(tz).replace(tzinfo=None)
        if wall:
            if matches(shown):
                fires.append(t)
        else:
            due = [m for m in _minutes_between(before, shown) if matches(m) and m not in seen]
            if due:
                fires.append(t)
                seen.update(due)
        before = shown
        t += _MIN
    return fires


def _minutes_between(before: datetime, shown: datetime) -> list[datetime]:
    """The wall-clock minutes after ``before`` up to ``shown``: one normally, those skipped
    too after a jump forward, just ``shown`` after a jump back."""
    if shown <= before:
        return [shown]
    found = []
    m = before + _MIN
    while m <= shown:
        found.append(m)
        m += _MIN
    return found


@pytest.mark.parametrize("zone", WALK_ZONES)
@pytest.mark.parametrize("expression,kind", WALK_EXPRESSIONS)
def test_dst_rule_matches_a_minute_by_minute_walk(zone: str, expression: str, kind: str) -> None:
    tz = ZoneInfo(zone)
    changes = _transitions(tz, 2024)
    assert len(changes) == 2  # spring forward and fall back
    for change in changes:
        start, until = change - timedelta(hours=7), change + timedelta(hours=7)
        due, ran = drive(expression, tz, start, until)
        expected = _expected(expression, tz, start, until)
        assert [d.astimezone(UTC) for d in due] == expected, (zone, change, kind)
        assert len(ran) == len(expected)


def test_the_walk_sees_each_kind_of_change() -> None:
    """The zones cover a northern and a southern hemisphere, a midnight change and a
    30-minute one; and the walk itself tells the kinds apart where they differ."""
    shifts = {zone: {(c.astimezone(ZoneInfo(zone)).utcoffset()  # type: ignore[operator]
                      - (c - _MIN).astimezone(ZoneInfo(zone)).utcoffset())
                     for c in _transitions(ZoneInfo(zone), 2024)}
              for zone in WALK_ZONES}
    assert shifts["Australia/Lord_Howe"] == {timedelta(minutes=30), timedelta(minutes=-30)}
    assert shifts["America/Santiago"] == {timedelta(hours=1), timedelta(hours=-1)}
    sydney = ZoneInfo("Australia/Sydney")
    spring = next(c for c in _transitions(sydney, 2024) if c.month == 10)
    # Sydney, 2024-10-06, 02:00 -> 03:00: hourly at :30 has no 02:30; daily 02:30 runs at 03:00.
    hourly = _expected("30 * * * *", sydney, spring - timedelta(hours=2),
                       spring + timedelta(hours=2))
    daily = _expected("30 2 * * *", sydney, spring - timedelta(hours=2),
                      spring + timedelta(hours=2))
    assert [h.astimezone(sydney).strftime("%H:%M") for h in hourly] == ["00:30", "01:30",
                                                                         "03:30", "04:30"]
    assert [d.astimezone(sydney).strftime("%H:%M") for d in daily] == ["03:00"]
