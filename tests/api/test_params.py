"""Run parameters: declarations, typing, the Python API, the CLI, and resume."""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom import Engine, Task
from taskloom.api.params import Param, declare, from_recorded, recorded, resolve
from taskloom.app.cli import main
from taskloom.app.config import load_config
from taskloom.kernel.errors import ConfigError
from taskloom_std.stores.sqlite import SqliteStore


def test_declarations_and_types():
    params, problems = declare({
        "day": {"type": "date", "default": "today"},
        "n": 3,
        "ratio": {"type": "float", "default": 0.5},
        "files": {"type": "list", "default": ["a", "b"]},
        "who": {"type": "str"},
        "bad": {"type": "decimal"},
        "worse": {"type": "int", "default": "x"},
    })
    assert problems == [
        "params.bad.type: must be one of str, int, float, bool, date, datetime, list, "
        "got 'decimal'",
        "params.worse.default: expected an integer, got 'x'",
    ]
    assert params["n"] == Param("n", "int", 3)
    now = dt.datetime(2026, 12, 1, 9, 30)
    values = resolve(params, {"who": "ann", "n": "7"}, now=now)
    assert values == {"day": dt.date(2026, 12, 1), "n": 7, "ratio": 0.5,
                      "files": ["a", "b"], "who": "ann"}


def test_every_problem_names_its_parameter():
    params, _ = declare({"day": {"type": "date"}, "n": 3, "flag": False})
    with pytest.raises(ConfigError) as caught:
        resolve(params, {"n": "three", "flg": "true", "flag": "maybe"})
    assert caught.value.problems == [
        "--param flg: unknown parameter (parameters: day, n, flag); did you mean 'flag'?",
        "parameter 'day' (date) is required: give it with --param day=VALUE",
        "--param n: parameter 'n': expected an integer, got 'three'",
        "--param flag: parameter 'flag': expected true or false, got 'maybe'",
    ]


def test_recorded_values_come_back_typed():
    values = {"day": dt.date(2026, 12, 1), "at": dt.datetime(2026, 12, 1, 8, 0),
              "n": 2, "files": ["x"], "ok": True, "opaque": object()}
    overrides = recorded(values)
    assert "params.opaque" not in overrides
    back = from_recorded({**overrides, "taskloom.queue": "fifo"})
    assert back == {k: v for k, v in values.items() if k != "opaque"}


def test_context_params_reach_bodies_and_resume_reuses_them(tmp_path):
    seen = []

    def body(context):
        seen.append(dict(context.params))
        if len(seen) == 1:
            raise RuntimeError("first time")
        return context.params["day"]

    db = tmp_path / "p.db"
    engine = Engine(store="sqlite", store_options={"path": str(db)})
    try:
        day = dt.date(2026, 12, 1)
        first = engine.run([Task("t", fn=body)], params={"day": day}, run_id="r1")
        assert not first.ok
        again = engine.resume("r1", [Task("t", fn=body)], retry_failed=True)
    finally:
        engine.close()
    assert again.ok and again.results["t"] == day
    assert seen == [{"day": day}, {"day": day}]


def test_memory_store_resume_reuses_params():
    calls = []

    def body(context):
        calls.append(context.params["n"])
        if len(calls) == 1:
            raise RuntimeError("once")
        return context.params["n"]

    engine = Engine()
    assert not engine.run([Task("t", fn=body)], params={"n": 4}, run_id="m1").ok
    assert engine.resume("m1", [Task("t", fn=body)], retry_failed=True).results["t"] == 4
    assert calls == [4, 4]


STEPS = textwrap.dedent('''
    import datetime as dt
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def report(day, times, context):
        with open(HERE / "seen.log", "a") as f:
            f.write(f"{day.isoformat()} {times} {context.params['day']!r}\\n")
        if not (HERE / "fixed").exists():
            raise ValueError("not yet")
        return day.isoformat()

    def weekend(context):
        return context.params["day"].weekday() >= 5

    def cleanup():
        return "cleaned"
''')

CONFIG = textwrap.dedent('''
    [params]
    day = { type = "date", default = "today" }
    times = 2

    [tasks.report]
    call = "param_steps:report"
    args = { day = "{params.day}", times = "{params.times}" }

    [tasks.cleanup]
    call = "param_steps:cleanup"
    when = "param_steps:weekend"
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "param_steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("param_steps", None)
    yield tmp_path
    sys.modules.pop("param_steps", None)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_params_typed_recorded_and_reapplied_by_resume(project: Path):
    result = _invoke("run", "--param", "day=2026-12-05", "--param", "times=3")
    assert result.exit_code == 1, result.output
    assert "cleanup completed" in result.output  # 2026-12-05 is a Saturday: the predicate saw it
    db = project / ".taskloom" / "taskloom.db"
    store = SqliteStore(db)
    try:
        (record,) = store.runs()
        assert store.recorded_params(record.id) == {"day": dt.date(2026, 12, 5), "times": 3}
        outcomes = store.outcomes(record.id)
    finally:
        store.close()
    assert outcomes["cleanup"][0] == "completed"
    (project / "fixed").touch()
    resumed = _invoke("resume", record.id, "--retry-failed")
    assert resumed.exit_code == 0, resumed.output
    lines = (project / "seen.log").read_text().splitlines()
    assert lines == ["2026-12-05 3 datetime.date(2026, 12, 5)"] * 2


def test_cli_bad_params_exit_2_naming_them_without_traceback(project: Path):
    result = _invoke("run", "--param", "day=tomorrow", "--param", "tims=1", "--param", "x")
    assert result.exit_code == 2
    assert "--param 'x': expected name=value" in result.output
    assert "Traceback" not in result.output
    result = _invoke("run", "--param", "day=tomorrow", "--param", "tims=1")
    assert result.exit_code == 2
    assert "--param tims: unknown parameter (parameters: day, times); did you mean 'times'?" \
        in result.output
    assert "parameter 'day': expected a date (YYYY-MM-DD or \"today\"), got 'tomorrow'" \
        in result.output
    assert "Traceback" not in result.output


def test_config_checks_params_and_args(tmp_path):
    (tmp_path / "taskloom.toml").write_text(textwrap.dedent('''
        [params]
        day = { type = "dte", deflt = 1 }
        [tasks.a]
        call = "os:getcwd"
        args = { x = "{params.nope}" }
    '''))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "taskloom.toml")
    problems = caught.value.problems
    assert "params.day.deflt: unknown key; a parameter takes type, default, description" \
        in problems
    assert any(p.startswith("params.day.type: must be one of") for p in problems)
    assert "tasks.a.args: references parameter 'nope', which [params] does not declare" \
        in problems
