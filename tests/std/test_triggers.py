"""The standard triggers: date, interval, cron, conditional; errors; a plugin's own trigger."""

from __future__ import annotations

import math
import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskloom
from taskloom import ConfigError, FakeClock, Task, TaskScheduler, hookimpl
from taskloom_std.scheduling import (
    ConditionalTrigger,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
)

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_registered_as_trigger_plugins() -> None:
    plugins = taskloom.load_plugins()
    assert {"date", "interval", "cron", "conditional"} <= set(plugins.registry.names("trigger"))
    assert plugins.registry.owner("trigger", "cron") == "scheduling"


# -- date --------------------------------------------------------------------------------------
def test_date_fires_once() -> None:
    trigger = DateTrigger(T0)
    assert trigger.next_fire_time(T0 - timedelta(seconds=1)) == T0
    assert trigger.next_fire_time(T0) is None
    assert trigger.first_fire_time(T0 + timedelta(days=1)) == T0  # past: due, late


def test_date_accepts_iso_strings_and_reads_naive_as_local() -> None:
    assert DateTrigger("2024-05-01T12:00:00+00:00").at == T0
    naive = datetime(2024, 5, 1, 12, 0)
    assert DateTrigger(naive).at == naive.astimezone().astimezone(UTC)
    with pytest.raises(ConfigError, match="not an ISO datetime"):
        DateTrigger("tomorrow")


# -- interval ------------------------------------------------------------------------------------
def test_interval_grid_from_start_to_end() -> None:
    trigger = IntervalTrigger(timedelta(minutes=10), start=T0, end=T0 + timedelta(minutes=30))
    assert trigger.first_fire_time(T0 - timedelta(hours=1)) == T0
    times = [T0]
    while (nxt := trigger.next_fire_time(times[-1])) is not None:
        times.append(nxt)
    assert times == [T0 + timedelta(minutes=m) for m in (0, 10, 20, 30)]
    # Asked from the middle of a slot, it keeps the grid.
    assert trigger.next_fire_time(T0 + timedelta(minutes=14)) == T0 + timedelta(minutes=20)


def test_interval_without_start_is_one_interval_after_now() -> None:
    trigger = IntervalTrigger(seconds=90)
    assert trigger.first_fire_time(T0) == T0 + timedelta(seconds=90)
    assert trigger.next_fire_time(T0) == T0 + timedelta(seconds=90)
    assert IntervalTrigger(minutes=1, hours=1).seconds == 3660


def test_interval_jitter_uses_the_injected_rng() -> None:
    clock = FakeClock(T0)
    trigger = IntervalTrigger(60, jitter=5.0, rng=random.Random(7))
    with TaskScheduler(clock=clock) as scheduler:
        job = scheduler.add_job(Task("j"), trigger)
        dues = []
        for _ in range(20):
            due = job.next_fire_time
            assert due is not None
            dues.append(due)
            clock.set(due)
            scheduler.run_pending()
    expected_rng = random.Random(7)
    expected = [T0 + timedelta(seconds=60 * (i + 1) + expected_rng.uniform(0, 5))
                for i in range(20)]
    assert [(d - T0).total_seconds() for d in dues] == pytest.approx(
        [(e - T0).total_seconds() for e in expected], abs=1e-5)
    assert all(0 <= (d - T0).total_seconds() - 60 * (i + 1) < 5 for i, d in enumerate(dues))


@pytest.mark.parametrize("kwargs,message", [
    ({"interval": 0}, "interval must be > 0"),
    ({"interval": -5}, "interval must be > 0"),
    ({"interval": 10, "jitter": 10.0}, "jitter must be"),
    ({"interval": 10, "start": T0, "end": T0 - timedelta(1)}, "end is before start"),
])
def test_interval_bad_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IntervalTrigger(**kwargs)


# -- cron ----------------------------------------------------------------------------------------
def fires(trigger: CronTrigger, after: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        nxt = trigger.next_fire_time(after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


def test_cron_names_last_nth_and_seconds() -> None:
    assert fires(CronTrigger("0 9 * * MON-FRI"), datetime(2024, 5, 3, 10, tzinfo=UTC), 2) == [
        datetime(2024, 5, 6, 9, tzinfo=UTC), datetime(2024, 5, 7, 9, tzinfo=UTC)]
    # Weekday 1 is Monday (standard cron).
    assert CronTrigger("0 9 * * 1").next_fire_time(T0).weekday() == 0  # type: ignore[union-attr]
    assert fires(CronTrigger("0 0 L * *"), T0, 2) == [
        datetime(2024, 5, 31, tzinfo=UTC), datetime(2024, 6, 30, tzinfo=UTC)]
    assert fires(CronTrigger("0 0 LW * *"), T0, 2) == [
        datetime(2024, 5, 31, tzinfo=UTC), datetime(2024, 6, 28, tzinfo=UTC)]
    assert CronTrigger("0 12 * * 5L").next_fire_time(T0) == datetime(2024, 5, 31, 12, tzinfo=UTC)
    assert CronTrigger("0 9 * * 1#2").next_fire_time(T0) == datetime(2024, 5, 13, 9, tzinfo=UTC)
    assert CronTrigger("0 0 1 jan,jul *").next_fire_time(T0) == datetime(2024, 7, 1, tzinfo=UTC)
    # Six fields: seconds first.
    assert fires(CronTrigger("*/20 * * * * *"), T0, 3) == [
        T0 + timedelta(seconds=s) for s in (20, 40, 60)]


def test_cron_in_a_time_zone() -> None:
    trigger = CronTrigger("30 2 * * *", "Asia/Tokyo")
    assert trigger.next_fire_time(T0) == datetime(2024, 5, 1, 17, 30, tzinfo=UTC)


@pytest.mark.parametrize("expression,field", [
    ("61 * * * *", "field 1 (minute)"),
    ("* 24 * * *", "field 2 (hour)"),
    ("* * 0 * *", "field 3 (day-of-month)"),
    ("* * * 13 *", "field 4 (month)"),
    ("* * * * FUNDAY", "field 5 (day-of-week)"),
    ("61 * * * * *", "field 1 (second)"),
    ("0 61 * * * *", "field 2 (minute)"),
    ("*/0 * * * *", "field 1 (minute)"),
    ("0 0 32W * *", "field 3 (day-of-month)"),
    ("0 0 0W * *", "field 3 (day-of-month)"),
    ("0 0 30W 2 *", "field 3 (day-of-month)"),  # February never has a 30th
    ("0 0 0 1W,15W * *", "field 4 (day-of-month)"),  # W stands alone in its field
    ("0 0 15W * MON", "field 3 (day-of-month) '15W' needs '*' in field 5 (day-of-week)"),
])
def test_cron_bad_field_is_named(expression: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CronTrigger(expression)
    assert repr(expression) in str(info.value)
    assert field in str(info.value)


def test_cron_bad_field_count_and_zone() -> None:
    with pytest.raises(ConfigError, match=r"'\* \* \*': expected 5 fields .* got 3"):
        CronTrigger("* * *")
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'") as info:
        CronTrigger("0 9 * * *", "Mars/Olympus")
    assert "'0 9 * * *'" in str(info.value)
    with pytest.raises(ConfigError, match="ambiguous"):
        CronTrigger("0 9 * * *", ambiguous="twice")


def test_cron_rare_and_impossible_dates() -> None:
    # February 30th does not exist; cronsim rejects it outright.
    with pytest.raises(ConfigError, match="day-of-month"):
        CronTrigger("0 0 30 2 *")
    nxt = CronTrigger("0 0 29 2 *").next_fire_time(T0)
    assert nxt is not None and nxt.date().isoformat() == "2028-02-29"


# -- the nearest-weekday form nW ---------------------------------------------------------------
def test_cron_nearest_weekday_known_dates() -> None:
    # 2024-06-15 is a Saturday: the Friday before. 2024-09-15 is a Sunday: the Monday after.
    assert fires(CronTrigger("0 9 15W * *"), datetime(2024, 5, 20, tzinfo=UTC), 4) == [
        datetime(2024, 6, 14, 9, tzinfo=UTC), datetime(2024, 7, 15, 9, tzinfo=UTC),
        datetime(2024, 8, 15, 9, tzinfo=UTC), datetime(2024, 9, 16, 9, tzinfo=UTC)]
    # It never leaves the month: June 1st 2024 is a Saturday, so Monday the 3rd;
    # March 31st 2024 is a Sunday, so Friday the 29th; April has no 31st.
    assert CronTrigger("0 0 1W * *").next_fire_time(datetime(2024, 5, 20, tzinfo=UTC)) == \
        datetime(2024, 6, 3, tzinfo=UTC)
    assert fires(CronTrigger("0 0 31W * *"), datetime(2024, 3, 1, tzinfo=UTC), 2) == [
        datetime(2024, 3, 29, tzinfo=UTC), datetime(2024, 5, 31, tzinfo=UTC)]
    # Several times on that day, seconds first, lower case.
    assert fires(CronTrigger("30 0 9,17 15w 6 *"), datetime(2024, 1, 1, tzinfo=UTC), 3) == [
        datetime(2024, 6, 14, 9, 0, 30, tzinfo=UTC), datetime(2024, 6, 14, 17, 0, 30, tzinfo=UTC),
        datetime(2025, 6, 16, 9, 0, 30, tzinfo=UTC)]  # 2025-06-15 is a Sunday
    # February 29th only in leap years (2025-2027 have none; 2028-02-29 is a Tuesday).
    assert CronTrigger("0 0 29W 2 *").next_fire_time(datetime(2024, 3, 1, tzinfo=UTC)) == \
        datetime(2028, 2, 29, tzinfo=UTC)


def test_cron_nearest_weekday_in_a_time_zone_on_a_dst_day() -> None:
    # 2024-03-31 is a Sunday and Berlin's spring-forward day: 31W is Friday the 29th (CET).
    trigger = CronTrigger("30 2 31W 3 *", "Europe/Berlin")
    assert trigger.next_fire_time(datetime(2024, 3, 1, tzinfo=UTC)) == \
        datetime(2024, 3, 29, 1, 30, tzinfo=UTC)


def _nearest_weekday_reference(year: int, month: int, day: int) -> int | None:
    """The weekday of the month closest to ``day`` (ties cannot happen), by brute force."""
    days = [d for d in range(1, 32) if _valid(year, month, d)]
    if day not in days:
        return None
    weekdays = [d for d in days if datetime(year, month, d).weekday() < 5]
    return min(weekdays, key=lambda d: abs(d - day))


def _valid(year: int, month: int, day: int) -> bool:
    try:
        datetime(year, month, day)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(day=st.integers(1, 31), months=st.sets(st.integers(1, 12), min_size=1, max_size=4),
       hour=st.integers(0, 23), after=st.integers(946_684_800, 2_208_988_800))
def test_cron_nearest_weekday_matches_brute_force(day: int, months: set[int], hour: int,
                                                  after: int) -> None:
    if day > max(29 if m == 2 else 30 if m in (4, 6, 9, 11) else 31 for m in months):
        return  # rejected up front (test_cron_bad_field_is_named)
    month_field = ",".join(str(m) for m in sorted(months))
    trigger = CronTrigger(f"0 {hour} {day}W {month_field} *")
    start = datetime.fromtimestamp(after, UTC)
    expected: list[datetime] = []
    year = start.year
    while len(expected) < 3:
        for month in sorted(months):
            found = _nearest_weekday_reference(year, month, day)
            when = None if found is None else datetime(year, month, found, hour, tzinfo=UTC)
            if when is not None and when > start and len(expected) < 3:
                expected.append(when)
        year += 1
    assert fires(trigger, start, 3) == expected


# -- cron against cronsim on random expressions ----------------------------------------------
def _field(values: range, names: list[str] | None = None) -> st.SearchStrategy[str]:
    lo, hi = values.start, values.stop - 1
    words = names or []

    @st.composite
    def term(draw: st.DrawFn) -> str:
        kind = draw(st.integers(0, 3 if words else 2))
        a, b = sorted((draw(st.integers(lo, hi)), draw(st.integers(lo, hi))))
        if kind == 0:
            return str(a)
        if kind == 1:
            return f"{a}-{b}"
        if kind == 2:
            return f"{draw(st.sampled_from(['*', f'{a}-{b}', str(a)]))}/{draw(st.integers(1, 9))}"
        return draw(st.sampled_from(words))

    @st.composite
    def field(draw: st.DrawFn) -> str:
        count = draw(st.integers(0, 3))
        return ",".join(draw(term()) for _ in range(count)) if count else "*"

    return field()


DOW = _field(range(0, 8), ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]) | st.sampled_from(
    ["5L", "1#2", "SUN#1", "0L"])
DOM = _field(range(1, 32)) | st.sampled_from(["L", "LW"])
MONTH = _field(range(1, 13), ["JAN", "MAR", "FEB", "DEC"])
FIVE = st.tuples(_field(range(0, 60)), _field(range(0, 24)), DOM, MONTH, DOW).map(" ".join)
SIX = st.tuples(_field(range(0, 60)), FIVE).map(" ".join)
AFTER = st.integers(946_684_800, 2_208_988_800).map(
    lambda ts: datetime.fromtimestamp(ts, UTC))  # 2000 to 2040, whole seconds


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=FIVE | SIX, after=AFTER)
def test_cron_matches_cronsim(expression: str, after: datetime) -> None:
    try:
        reference = CronSim(expression, after.replace(tzinfo=None))
    except CronSimError:
        with pytest.raises(ConfigError):
            CronTrigger(expression)
        return
    trigger = CronTrigger(expression)
    expected = []
    for when in reference:
        expected.append(when.replace(tzinfo=UTC))
        if len(expected) == 5:
            break
    assert fires(trigger, after, len(expected)) == expected
    # Asked afresh from any point, it agrees too.
    if expected:
        middle = expected[0] + (expected[-1] - expected[0]) / 2
        want = next(e for e in expected if e > middle)
        assert trigger.next_fire_time(middle) == want


# -- conditional -------------------------------------------------------------------------------
def test_conditional_polls_on_a_grid_since_the_epoch() -> None:
    trigger = ConditionalTrigger(lambda: True, poll=timedelta(seconds=0.1))
    # The same poll instant is the same float however it is reached.
    start = 1_700_000_000.05
    first = trigger.first_fire_ts(start)
    assert first >= start and first == 17_000_000_001 * 0.1
    chained = first
    for _ in range(1000):
        nxt = trigger.next_fire_ts(chained)
        assert nxt > chained
        chained = nxt
    assert chained == trigger.first_fire_ts(chained - 0.05) == 17_000_001_001 * 0.1
    assert trigger.first_fire_time(T0) == T0  # on the grid already: polled at once
    assert ConditionalTrigger(lambda: True, poll=7).next_fire_time(T0) == \
        datetime.fromtimestamp((T0.timestamp() // 7 + 1) * 7, UTC)


def test_conditional_fires_on_rising_edges() -> None:
    values = iter([False, True, True, False, True])
    trigger = ConditionalTrigger(lambda: next(values), poll=5)
    assert [trigger.check() for _ in range(5)] == [False, True, False, False, True]
    assert trigger.next_fire_time(T0) == T0 + timedelta(seconds=5)


def test_conditional_repeat_and_raising_condition() -> None:
    values = iter([True, True, False])
    trigger = ConditionalTrigger(lambda: next(values), repeat=True)
    assert [trigger.check() for _ in range(3)] == [True, True, False]

    def broken() -> bool:
        raise OSError("disk gone")

    assert ConditionalTrigger(broken).check() is False
    with pytest.raises(ConfigError, match="poll must be > 0"):
        ConditionalTrigger(lambda: True, poll=0)


# -- a plugin adds a trigger type -------------------------------------------------------------
class EveryOtherDay:
    """A calendar-like trigger from a third-party plugin: noon on listed dates."""

    def __init__(self, dates: list[str]) -> None:
        self.times = sorted(datetime.fromisoformat(d + "T12:00:00+00:00") for d in dates)

    def next_fire_time(self, after: datetime) -> datetime | None:
        return next((t for t in self.times if t > after), None)


class CalendarPlugin:
    @hookimpl
    def taskloom_register(self, registry: Any) -> None:
        registry.add("trigger", "calendar", EveryOtherDay)


def test_a_plugin_trigger_fires_through_the_scheduler() -> None:
    clock = FakeClock(T0)
    plugins = taskloom.load_plugins(plugins=[CalendarPlugin()])
    ran: list[datetime] = []
    task = Task("report", fn=lambda: ran.append(clock.now()))
    with TaskScheduler(clock=clock, plugins=plugins) as scheduler:
        job = scheduler.add_job(task, "calendar", dates=["2024-05-03", "2024-05-05"])
        assert isinstance(job.trigger, EveryOtherDay)
        while job.next_fire_time is not None:
            clock.set(job.next_fire_time)
            assert scheduler.run_pending() == ["report"]
    assert ran == [datetime(2024, 5, 3, 12, tzinfo=UTC), datetime(2024, 5, 5, 12, tzinfo=UTC)]
    assert scheduler.get_jobs() == []


# -- sharing plain interval triggers ------------------------------------------------------------
def test_interval_trigger_cannot_be_changed() -> None:
    trigger = IntervalTrigger(60)
    with pytest.raises(AttributeError, match="cannot set 'seconds'"):
        trigger.seconds = 5  # type: ignore[misc]
    assert trigger.seconds == 60.0


def test_shared_interval_trigger_is_one_instance_per_interval() -> None:
    assert IntervalTrigger.shared(60) is IntervalTrigger.shared(60)
    assert IntervalTrigger.shared(60) is not IntervalTrigger.shared(61)
    assert IntervalTrigger.shared(timedelta(minutes=2)).seconds == 120
    # True equals 1 but is not an interval; a cached 1-second trigger must not answer for it.
    IntervalTrigger.shared(1)
    with pytest.raises(ConfigError, match="interval trigger"):
        IntervalTrigger.shared(True)


def test_plain_recurring_jobs_share_a_trigger_and_fire_independently() -> None:
    clock = FakeClock(T0)
    ran: list[str] = []
    with TaskScheduler(clock=clock) as scheduler:
        first = scheduler.schedule_recurring(Task("a", fn=lambda: ran.append("a")), 60)
        clock.advance(30)
        second = scheduler.schedule_recurring(Task("b", fn=lambda: ran.append("b")), 60)
        jittered = scheduler.schedule_recurring(Task("c", fn=lambda: ran.append("c")), 60,
                                                jitter=1.0, rng=random.Random(3))
        assert first.trigger is second.trigger
        assert jittered.trigger is not first.trigger and jittered.trigger.jitter == 1.0
        # One trigger and one grid (whole minutes since the epoch), whenever a job was added:
        # a and b both fire at 60 and 120; c as well, plus up to a second of jitter.
        clock.set(T0 + timedelta(seconds=60))
        assert scheduler.run_pending() == ["a", "b"]
        clock.set(T0 + timedelta(seconds=61))
        assert scheduler.run_pending() == ["c"]
        assert first.next_fire_time == second.next_fire_time == T0 + timedelta(seconds=120)


class CountingInterval:
    """A stateful interval trigger: it counts its own fires, so it must not be shared."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.fired = 0

    def next_fire_time(self, after: datetime) -> datetime | None:
        self.fired += 1
        return after + timedelta(seconds=self.interval)


class CountingIntervalPlugin:
    @hookimpl
    def taskloom_register(self, registry: Any) -> None:
        registry.add("trigger", "interval", CountingInterval)


def test_an_interval_trigger_without_shared_gets_one_instance_per_job() -> None:
    plugins = taskloom.load_plugins(disable=["scheduling"], plugins=[CountingIntervalPlugin()])
    with TaskScheduler(clock=FakeClock(T0), plugins=plugins) as scheduler:
        a = scheduler.schedule_recurring(Task("a"), 60)
        b = scheduler.schedule_recurring(Task("b"), 60)
    assert isinstance(a.trigger, CountingInterval) and a.trigger is not b.trigger


# -- bad values: a ConfigError naming the key, never a traceback ------------------------------
@pytest.mark.parametrize("zone,message", [
    (5, "timezone must be an IANA time zone name such as 'Europe/Berlin', got int 5"),
    (b"Europe/Berlin", "timezone must be an IANA time zone name"),
    ("x" * 300, "unknown time zone 'xxxxxxxx"),
    ("Europe", "unknown time zone 'Europe'"),
    ("../etc", "unknown time zone '../etc'"),
    ("Europe/Berlin\x00", "unknown time zone"),
])
def test_bad_time_zones_are_config_errors(zone: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        CronTrigger("0 3 * * *", zone)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=re.escape(message)):
        DateTrigger("2024-05-01T08:00:00", timezone=zone)  # type: ignore[arg-type]


@pytest.mark.parametrize("jitter", [math.inf, math.nan, -1, "2", None])
def test_bad_jitter_is_a_config_error(jitter: object) -> None:
    for build in (lambda: CronTrigger("0 3 * * *", jitter=jitter),  # type: ignore[arg-type]
                  lambda: DateTrigger(T0, jitter=jitter),  # type: ignore[arg-type]
                  lambda: IntervalTrigger(60, jitter=jitter)):  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="jitter"):
            build()


@pytest.mark.parametrize("kwargs,message", [
    ({"interval": 1e300}, "at most a century"),
    ({"interval": 1e-300}, "from 0.001s"),
    ({"interval": math.nan}, "interval must be > 0"),
    ({"hours": "2"}, "interval trigger: hours: expected seconds or a timedelta, got '2'"),
    ({"interval": 60, "start": datetime(1, 1, 1)}, "too close to the ends of the calendar"),
    ({"interval": 60, "end": 1e300}, "interval trigger end: expected epoch seconds between"),
])
def test_interval_values_out_of_range(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        IntervalTrigger(**kwargs)


@pytest.mark.parametrize("at", [datetime(1, 1, 1), datetime(1, 1, 1, tzinfo=UTC),
                                "0001-01-01T00:30:00", datetime(9999, 12, 31, 23, 59), -1e20])
@pytest.mark.parametrize("zone", [None, "Pacific/Kiritimati", "America/Adak"])
def test_date_near_the_ends_of_the_calendar(at: object, zone: str | None) -> None:
    with pytest.raises(ConfigError, match="date trigger: at: .*(calendar|between)"):
        DateTrigger(at, timezone=zone)  # type: ignore[arg-type]


def test_a_trigger_past_the_year_9999_is_done() -> None:
    late = IntervalTrigger(days=365 * 99, start=datetime(9990, 1, 1, tzinfo=UTC))
    assert late.next_fire_time(datetime(9990, 1, 2, tzinfo=UTC)) is None


@pytest.mark.parametrize("nickname,expression", [
    ("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"), ("@DAILY", "0 0 * * *"),
])
def test_cron_nicknames(nickname: str, expression: str) -> None:
    after = datetime(2024, 2, 27, 13, 17, tzinfo=UTC)
    assert fires(CronTrigger(nickname, "Europe/Berlin"), after, 5) == \
        fires(CronTrigger(expression, "Europe/Berlin"), after, 5)


def test_reboot_and_unknown_nicknames_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"'@reboot': unknown nickname \(use one of @yearly"):
        CronTrigger("@reboot")
    with pytest.raises(ConfigError, match="cron expression must be a string such as"):
        CronTrigger(30)  # type: ignore[arg-type]


def test_dst_kind_and_policies() -> None:
    assert not CronTrigger("30 2 * * *").wall_clock
    assert not CronTrigger("0 1-5 * * *").wall_clock  # a range is a fixed time, as in cron(8)
    assert CronTrigger("*/15 * * * *").wall_clock and CronTrigger("0 */2 * * *").wall_clock
    assert CronTrigger("@hourly").wall_clock and not CronTrigger("@daily").wall_clock
    fixed, wall = CronTrigger("30 2 * * *"), CronTrigger("30 * * * *")
    assert (fixed.ambiguous, fixed.nonexistent) == ("once", "shift")
    assert (wall.ambiguous, wall.nonexistent) == ("both", "skip")
    with pytest.raises(ConfigError, match="nonexistent must be 'shift' or 'skip', got 'raise'"):
        CronTrigger("30 2 * * *", nonexistent="raise")


@pytest.mark.parametrize("zone", [None, "Europe/Berlin"])
def test_every_cron_trigger_refuses_a_naive_time(zone: str | None) -> None:
    trigger = CronTrigger("30 2 * * *", zone)
    with pytest.raises(ValueError, match="after must be an aware datetime"):
        trigger.next_fire_time(datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="after must be an aware datetime"):
        next(trigger.iter_from(datetime(2024, 5, 1)))


def test_interval_jobs_started_apart_share_one_grid() -> None:
    """Schedulers started at different moments compute the same due times for the same
    interval, the same floats, so their claims collide."""
    for step in (1.0, 0.25, 0.1, 7.0, 3600.0, 86400.0):
        trigger = IntervalTrigger(step)
        now = (1_714_550_400 // step) * step + step / 1000  # just after a grid time
        firsts = [trigger.first_fire_ts(now + step * f) for f in (0.0, 0.3, 0.99)]
        assert len(set(firsts)) == 1 and firsts[0] > now
        chained = firsts[0]
        for _ in range(500):
            chained = trigger.next_fire_ts(chained)  # type: ignore[assignment]
        assert chained == trigger.first_fire_ts(chained - step / 2)
        assert chained == (round(firsts[0] / step) + 500) * step
    # A daily job without start runs at 00:00 UTC.
    assert IntervalTrigger(days=1).first_fire_time(T0) == datetime(2024, 5, 2, tzinfo=UTC)


def test_date_plus_jitter_must_end_inside_the_calendar() -> None:
    with pytest.raises(ConfigError, match="at plus jitter ends past the year 9999"):
        DateTrigger(datetime(9999, 12, 29, tzinfo=UTC), jitter=1e9)
    with pytest.raises(ConfigError, match="jitter must be a number of seconds from 0 to a century"):
        CronTrigger("0 3 * * *", jitter=1e12)
