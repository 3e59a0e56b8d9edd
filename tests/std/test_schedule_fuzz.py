"""Fuzzing the scheduler API: cron strings, time zones and schedule options either work or
raise a ConfigError naming what is wrong; never another exception.

With the environment variable ``CI`` set each target runs 2,000 examples (the
``scheduler-fuzz-ci`` profile), else 200.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskloom import ConfigError, FakeClock, Task, TaskScheduler
from taskloom_std.scheduling import CronTrigger, DateTrigger

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)

settings.register_profile("scheduler-fuzz-ci", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("scheduler-fuzz-local", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(settings.get_profile(
    "scheduler-fuzz-ci" if os.environ.get("CI") else "scheduler-fuzz-local"))

# -- values ----------------------------------------------------------------------------------
TOKENS = st.sampled_from([
    "*", "*/5", "*/0", "0", "5", "59", "60", "23", "24", "31", "32", "1-5", "5-1", "1-5/2",
    "0/15", "L", "LW", "15W", "0W", "32W", "5L", "1#2", "1#6", "MON", "jan", "SUN-SAT", ",",
    "-", "/", "?", "1,2,3", "99999999999999999999", "-1", "1.5", "", "**", "@", "W", "#",
])
FIELDS = st.lists(TOKENS, min_size=0, max_size=8).map(" ".join)
NICKNAMES = st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly",
                             "@annually", "@midnight", "@reboot", "@HOURLY", "@", "@every"])
CRON = st.one_of(FIELDS, NICKNAMES, st.text(max_size=40),
                 st.text(alphabet="0123456789*/-,LW# ", max_size=30))
ZONE_NAMES = st.sampled_from([
    "Europe/Berlin", "UTC", "utc", "America/Santiago", "Australia/Lord_Howe", "Europe",
    "America", "Etc", "posix", "right", "zone.tab", "tzdata.zi", "../etc", "/etc/passwd",
    "", ".", "Europe/", "Europe//Berlin", "Europe/Berlin\x00", "Mars/Olympus", "x" * 300,
    "Europe/" + "a" * 260,
])
ZONES = st.one_of(ZONE_NAMES, st.text(max_size=40), st.none(), st.integers(), st.floats(),
                  st.booleans(), st.binary(max_size=10), st.lists(st.integers(), max_size=2))
NUMBERS = st.one_of(st.integers(min_value=-10**30, max_value=10**30),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 1e300, -1e300, math.inf, -math.inf, math.nan,
                                     1e-300, 5e-324, 3.2e9, 1e18]))
TIMES = st.one_of(
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, 0, 30),
                     datetime(9999, 12, 31, 23, 59), datetime.min.replace(tzinfo=UTC),
                     datetime.max.replace(tzinfo=UTC)]),
    st.text(max_size=30), st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59",
                                           "2024-03-31T02:30:00", "2024-13-01"]),
    NUMBERS,
)
ANY = st.one_of(NUMBERS, st.text(max_size=20), st.none(), st.booleans(),
                st.timedeltas(), TIMES, st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
OPTION_VALUES: dict[str, Any] = {
    "expression": CRON, "timezone": ZONES, "ambiguous": st.one_of(
        st.sampled_from(["once", "both", "twice", ""]), ANY),
    "nonexistent": st.one_of(st.sampled_from(["shift", "skip", "raise"]), ANY),
    "jitter": st.one_of(NUMBERS, st.timedeltas(), ANY), "interval": st.one_of(
        NUMBERS, st.timedeltas(), ANY),
    "seconds": NUMBERS, "minutes": NUMBERS, "hours": NUMBERS, "days": NUMBERS,
    "start": TIMES, "end": TIMES, "at": TIMES, "run_date": TIMES,
    "misfire_grace_time": st.one_of(NUMBERS, ANY), "max_instances": st.one_of(NUMBERS, ANY),
    "coalesce": ANY, "id": st.one_of(st.text(max_size=10), ANY), "poll": NUMBERS,
    "unknown_option": ANY,
}
OPTIONS = st.sets(st.sampled_from(sorted(OPTION_VALUES)), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTION_VALUES[k] for k in sorted(keys)}))


def _config_error_or_works(action: Any) -> Any:
    try:
        return action()
    except ConfigError as exc:
        assert str(exc)  # says what is wrong
        return None


# -- targets ---------------------------------------------------------------------------------
@FUZZ
@given(expression=CRON, zone=st.one_of(st.none(), ZONE_NAMES),
       after=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                          timezones=st.just(UTC)))
def test_cron_strings(expression: str, zone: str | None, after: datetime) -> None:
    trigger = _config_error_or_works(lambda: CronTrigger(expression, zone))
    if trigger is None:
        return
    first = trigger.next_fire_time(after)
    if first is not None:
        assert first > after and first.tzinfo is not None
        second = trigger.next_fire_time(first)
        assert second is None or second > first


@FUZZ
@given(zone=ZONES)
def test_time_zones(zone: object) -> None:
    cron = _config_error_or_works(lambda: CronTrigger("30 2 * * *", zone))  # type: ignore[arg-type]
    date = _config_error_or_works(
        lambda: DateTrigger(datetime(2024, 3, 31, 2, 30), timezone=zone))  # type: ignore[arg-type]
    assert (cron is None) == (date is None)  # one rule for both triggers
    if cron is not None:
        assert cron.next_fire_time(T0) is not None


def test_schedule_options() -> None:
    clock = FakeClock(T0)
    with TaskScheduler(clock=clock) as scheduler:
        task = Task("fuzzed")

        @FUZZ
        @given(kind=st.sampled_from(["cron", "interval", "date", "conditional", "nope", ""]),
               options=OPTIONS)
        def add_job(kind: str, options: dict[str, Any]) -> None:
            if kind == "conditional":
                options = {**options, "condition": bool}
            job = _config_error_or_works(lambda: scheduler.add_job(task, kind, **options))
            if job is not None:
                assert job.next_fire_time is None or job.next_fire_time.tzinfo is not None
                scheduler.remove_job(job.id)

        @FUZZ
        @given(interval=OPTION_VALUES["interval"], expression=CRON, zone=ZONES,
               when=TIMES, options=OPTIONS)
        def entry_points(interval: Any, expression: Any, zone: Any, when: Any,
                         options: dict[str, Any]) -> None:
            rest = {k: v for k, v in options.items()
                    if k in ("misfire_grace_time", "max_instances", "coalesce", "jitter")}
            for add in (lambda: scheduler.schedule_recurring(task, interval, **rest),
                        lambda: scheduler.schedule_cron(task, expression, zone, **rest),
                        lambda: scheduler.add_task(task, when, **rest)):
                job = _config_error_or_works(add)
                if job is not None:
                    assert job.next_fire_time is None or job.next_fire_time.tzinfo is not None
                    scheduler.remove_job(job.id)

        add_job()
        entry_points()
