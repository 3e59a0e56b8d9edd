"""Fuzzing the configuration and the Task constructor: no traceback for bad input, ever.

Configuration files are generated from a strategy that mixes the schema's own keys with
values of the wrong type or out of range (inf, nan, 1e300, year 1, 300-character time zones,
directory names...) and random tables. Each file goes through ``validate_config`` and
``taskloom validate`` (in-process): a problem list or OK, exit status 0 or 2, never a
traceback. With ``CI`` set, each target runs 2,000 examples (the ``fuzz-ci`` profile).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskloom import Engine, Task, TaskloomError
from taskloom.app.cli import main
from taskloom.app.config import validate_config
from taskloom.app.keys import ENGINE_KEYS, INTERVAL_UNITS, SCHEDULE_KEYS, TASK_KEYS

settings.register_profile(
    "fuzz-ci", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "fuzz-local", max_examples=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FUZZ = settings.get_profile("fuzz-ci" if os.environ.get("CI") else "fuzz-local")


# -- TOML text from Python values -------------------------------------------------------------
def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_document(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for key, value in doc.items():
        if key == "schedules" and isinstance(value, list) and all(
                isinstance(v, dict) for v in value):
            for entry in value:
                lines.append("[[schedules]]")
                lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in entry.items())
        elif key == "tasks" and isinstance(value, dict) and all(
                isinstance(v, dict) for v in value.values()):
            for name, spec in value.items():
                lines.append(f"[tasks.{toml_key(name)}]")
                lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in spec.items())
        else:
            lines.insert(0, f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


# -- strategies ------------------------------------------------------------------------------
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 10**6, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e-300, math.inf, -math.inf, math.nan, 0.5]),
)
DATES = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31),
                 timezones=st.just(dt.timezone.utc)),
    st.sampled_from([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59),
                     dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
                     dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(-dt.timedelta(hours=5))),
                     dt.date(1, 1, 1), dt.date(9999, 12, 31)]),
)
TIME_ZONES = st.one_of(
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "", "Europe", "America",
                     "Nowhere/City", "../etc", "/", "UTC/", "Europe/../UTC", "a" * 300,
                     "Europe/" + "b" * 300, "zoneinfo", "posixrules", ".", "\x00"]),
    TEXT,
)
CRONS = st.one_of(
    st.sampled_from(["* * * * *", "30 2 * * *", "5", "61 * * * *", "@daily", "", "* * * *",
                     "0 0 31 2 *", "*/0 * * * *", "0 0 * * 8", "1-0 * * * *",
                     "0 0 1 1 * 2099", "@reboot", "L * * * *", "* * * * * *"]),
    TEXT,
)
COMPONENTS = st.sampled_from(["fifo", "priority", "thread", "process", "asyncio", "inline",
                              "sqlite", "memory", "cron", "interval", "date", "conditional",
                              "nosuch", ""])
REFS = st.sampled_from(["os:getcwd", "os.path:join", "nosuch_module:fn", "os:nosuch", "x",
                        "os:sep", "", "1bad:ref", "math:inf"])


def junk(depth: int = 2) -> st.SearchStrategy[Any]:
    scalars = st.one_of(NUMBERS, st.booleans(), TEXT, DATES, TIME_ZONES, CRONS, COMPONENTS)
    if depth == 0:
        return scalars
    return st.one_of(
        scalars,
        st.lists(junk(depth - 1), max_size=3),
        st.dictionaries(st.one_of(TEXT, st.sampled_from(["kind", "soft", "hard", "seconds",
                                                         "max_retries", "n", "period"])),
                        junk(depth - 1), max_size=3),
    )


def tables(keys: list[str], extra: st.SearchStrategy[Any], max_size: int = 5
           ) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), TEXT), extra, max_size=max_size)


PLAUSIBLE_TASK = st.one_of(
    REFS,
    st.integers(-3, 12),
    st.lists(st.sampled_from(["a", "b", "c", "d", "nope"]), max_size=3),
    st.fixed_dictionaries({}, optional={"soft": NUMBERS, "hard": NUMBERS}),
    st.fixed_dictionaries({}, optional={"max_retries": NUMBERS, "backoff": TEXT,
                                        "base_delay": NUMBERS, "jitter": NUMBERS}),
    st.fixed_dictionaries({}, optional={"ttl": NUMBERS, "key": TEXT}),
    st.fixed_dictionaries({}, optional={"failure_threshold": NUMBERS,
                                        "recovery_timeout": NUMBERS}),
    st.sampled_from(["all_success", "always", "nope"]),
)
TASK_TABLE = tables(list(TASK_KEYS), st.one_of(PLAUSIBLE_TASK, junk(1)))
TASKS = st.fixed_dictionaries(
    {"a": st.fixed_dictionaries({"call": st.just("os:getcwd")}) | TASK_TABLE},
    optional={"b": TASK_TABLE, "c": TASK_TABLE},
) | st.dictionaries(TEXT, TASK_TABLE, max_size=2)

INTERVALS = st.one_of(NUMBERS, st.dictionaries(st.sampled_from(list(INTERVAL_UNITS)) | TEXT,
                                               NUMBERS | junk(0), max_size=3))
SCHEDULE_VALUES = {
    "task": st.sampled_from(["a", "b", "nope"]) | junk(0),
    "cron": CRONS | junk(0),
    "interval": INTERVALS,
    "at": DATES | TEXT | junk(0),
    "timezone": TIME_ZONES | junk(0),
    "trigger": COMPONENTS | junk(0),
    "options": st.dictionaries(st.sampled_from(["expression", "seconds", "run_date", "timezone",
                                                "jitter", "start", "end"]) | TEXT,
                               NUMBERS | TIME_ZONES | CRONS | DATES | junk(1), max_size=3),
    "jitter": NUMBERS | junk(0),
    "misfire_grace_time": NUMBERS | junk(0),
    "max_instances": NUMBERS | junk(0),
}
SCHEDULE = st.fixed_dictionaries(
    {"task": st.sampled_from(["a", "b"])},
    optional={k: SCHEDULE_VALUES.get(k, junk(1)) for k in SCHEDULE_KEYS if k != "task"},
) | tables(list(SCHEDULE_KEYS), junk(1))

SECTIONS = ["otel", "logging", "retry", "webhook", "circuit_breaker", "resources",
            "store_options", "executors", "limits", "rate_limits"]
ENGINE_TABLE = tables([*ENGINE_KEYS, *SECTIONS],
                      st.one_of(COMPONENTS, junk(2)), max_size=6)

DOCUMENTS = st.one_of(
    st.fixed_dictionaries({"tasks": TASKS, "schedules": st.lists(SCHEDULE, min_size=1,
                                                                 max_size=3)},
                          optional={"taskloom": ENGINE_TABLE}),
    st.fixed_dictionaries({"taskloom": ENGINE_TABLE}, optional={"tasks": TASKS}),
    st.fixed_dictionaries({}, optional={"taskloom": ENGINE_TABLE | junk(0),
                                        "tasks": TASKS | junk(0),
                                        "schedules": st.lists(SCHEDULE, max_size=3) | junk(0)}),
    st.dictionaries(TEXT, junk(2), max_size=3),
)


def _write(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / "taskloom.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    return path


# -- the targets -------------------------------------------------------------------------------
@FUZZ
@given(doc=DOCUMENTS)
def test_validate_config_never_raises(tmp_path_factory: Any, doc: dict[str, Any]) -> None:
    path = _write(tmp_path_factory.mktemp("fuzz"), doc)
    problems = validate_config(path, env={})
    assert all(isinstance(p, str) and p for p in problems)


@FUZZ
@given(doc=DOCUMENTS)
def test_taskloom_validate_exits_0_or_2(tmp_path_factory: Any, doc: dict[str, Any]) -> None:
    path = _write(tmp_path_factory.mktemp("fuzz"), doc)
    result = CliRunner().invoke(main, ["validate", str(path)], env={"TASKLOOM_CONFIG": ""})
    assert result.exit_code in (0, 2), (toml_document(doc), result.output, result.exc_info)
    assert "Traceback" not in result.output


SET_KEYS = st.sampled_from([
    "taskloom.queue", "taskloom.executor", "taskloom.executor.max_workers", "taskloom.max_workers",
    "taskloom.otel.exporter", "taskloom.webhook", "taskloom", "tasks", "schedules",
    "tasks.a.retry", "tasks.a.retry.max_retries", "tasks.a.timeout.hard", "tasks.nosuch.retry",
    'tasks."a b".call', "tasks.a.depends_on[0]", "schedules[0].cron", "schedules.0.interval",
    "schedules[5].x", "a..b", "", ".",
]) | TEXT
SET_VALUES = st.sampled_from([
    "5", "-1", "inf", "nan", "1e300", '"x"', "[1,", "{a = 1}", "true", "fifo", "",
    "0001-01-01T00:00:00", '"Europe"', "{days = 1e300}", '{hard = 1}', '"os:getcwd"',
]) | TEXT
ENV_NAMES = st.sampled_from([
    "TASKLOOM_QUEUE", "TASKLOOM_EXECUTOR", "TASKLOOM_EXECUTOR__MAX_WORKERS", "TASKLOOM_STRICT",
    "TASKLOOM_MAX_WORKERS", "TASKLOOM_OTEL__EXPORTER", "TASKLOOM_WEBHOOK", "TASKLOOM_X__",
    "TASKLOOM___", "TASKLOOM_DISABLE_PLUGINS", "TASKLOOM_RETRY__MAX_RETRIES",
]) | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1,
             max_size=10).map(lambda s: "TASKLOOM_" + s)
ENV_VALUES = SET_VALUES.filter(lambda v: "\x00" not in v)  # the OS refuses NUL in values


def _pyproject(doc: dict[str, Any]) -> dict[str, Any]:
    """The same configuration as ``[tool.taskloom]``: [taskloom] keys one level up."""
    table: dict[str, Any] = {}
    engine = doc.get("taskloom")
    if isinstance(engine, dict):
        table.update(engine)
    elif "taskloom" in doc:
        table["taskloom"] = engine
    for key, value in doc.items():
        if key != "taskloom":
            table[key] = value
    return {"project": {"name": "demo"}, "tool": {"taskloom": table}}


@FUZZ
@given(doc=DOCUMENTS, pyproject=st.booleans(),
       sets=st.lists(st.tuples(SET_KEYS, SET_VALUES).map("=".join), max_size=3),
       env=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=3))
def test_overrides_and_pyproject_exit_0_or_2(tmp_path_factory: Any, doc: dict[str, Any],
                                             pyproject: bool, sets: list[str],
                                             env: dict[str, str]) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    name = "pyproject.toml" if pyproject else "taskloom.toml"
    path = folder / name
    path.write_text(toml_document(_pyproject(doc) if pyproject else doc), encoding="utf-8")
    args = ["validate", str(path)]
    for item in sets:
        args += ["--set", item]
    result = CliRunner().invoke(main, args, env={"TASKLOOM_CONFIG": "", **env})
    assert result.exit_code in (0, 2), (path.read_text(), sets, env, result.output,
                                        result.exc_info)
    assert "Traceback" not in result.output
    assert validate_config(path, sets, env=env) == [] or result.exit_code == 2


TASK_ARGS = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["t", "load"]), TEXT, junk(0))},
    optional={
        "description": junk(0), "priority": NUMBERS | junk(0),
        "dependencies": junk(1), "config": junk(1), "tags": junk(1),
        "trigger_rule": st.sampled_from(["all_success", "always"]) | junk(0),
        "retry": PLAUSIBLE_TASK | junk(1), "timeout": PLAUSIBLE_TASK | junk(1),
        "cache": PLAUSIBLE_TASK | junk(1), "circuit_breaker": PLAUSIBLE_TASK | junk(1),
        "executor": st.sampled_from(["thread", "inline", "asyncio", "nosuch"]) | junk(0),
        "deadline": NUMBERS | DATES | junk(0), "options": junk(1), "fallback": junk(0),
        "fn": junk(0),
    },
)


def _body() -> int:
    return 1


@FUZZ
@given(kwargs=TASK_ARGS)
def test_task_arguments_are_accepted_or_refused_with_a_message(kwargs: dict[str, Any]) -> None:
    """Task(...) takes its arguments or raises TypeError/ValueError naming the task; a task it
    takes either runs or is refused by the run (a TaskloomError), never a traceback."""
    try:
        task = Task(**kwargs)
    except (TypeError, ValueError) as exc:
        assert str(exc).startswith((f"task {kwargs['name']!r}: ", "a task name must be"))
        return
    task.fn = _body
    try:
        summary = ENGINE.run([task], timeout=30)
    except TaskloomError as exc:
        assert str(exc)
        return
    assert summary.ok or task.error, summary


ENGINE = Engine(executor="inline")
