"""Cron jobs across daylight-saving changes: exact fire times under a fake clock.

cron(8)'s rule: a fixed-time expression runs a local time that does not exist once at the
first valid instant after the gap, and a local time that occurs twice once (its first
occurrence) unless ``ambiguous="both"``; an expression whose minute or hour field starts
with ``*`` follows the wall clock (skipped times are not made up, repeated ones run again).
The independent minute-by-minute check of that rule is in ``test_cron_dst_walk``.
"""

from __future__ import annotations

from datetime import datetime, timezone
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
