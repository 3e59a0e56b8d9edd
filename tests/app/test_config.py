"""Configuration: files, pyproject, environment and --set overrides, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from config_files import write
from hypothesis import given
from hypothesis import strategies as st

from taskloom import ConfigError, Engine, load_config, validate_config
from taskloom.app.config import _split_key, env_overrides, format_path, parse_value

BODY = """
def extract():
    return [1, 2, 3]

def transform(extract):
    return [x * 10 for x in extract]

def positive(context):
    return context["last_result"][0] > 0
"""


def test_a_valid_file_builds_an_engine_and_tasks_that_run(tmp_path: Path) -> None:
    (tmp_path / "steps_ok.py").write_text(BODY)
    path = write(tmp_path, """
        [taskloom]
        queue = "fifo"
        executor = { kind = "thread", max_workers = 3 }

        [tasks.extract]
        call = "steps_ok:extract"
        priority = 2
        tags = ["io"]

        [tasks.transform]
        call = "steps_ok:transform"
        depends_on = ["extract"]
        when = "steps_ok:positive"
    """)
    config = load_config(path)
    kwargs = config.engine_kwargs()
    assert kwargs["queue"] == "fifo"
    assert kwargs["executor"] == "thread"
    assert kwargs["executor_options"] == {"max_workers": 3}
    tasks = config.build_tasks()
    assert [t.name for t in tasks] == ["extract", "transform"]
    assert tasks[0].priority == 2 and tasks[0].tags == frozenset({"io"})
    assert set(config.conditions()) == {"transform"}
    summary = Engine(**kwargs).run(tasks)
    assert summary.results == {"extract": [1, 2, 3], "transform": [10, 20, 30]}


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [taskloom]
        queue = "prio"
        max_worker = 3

        [tasks.extract]
        call = "etl:extract"
        retires = 3

        [tasks.transform]
        call = "not a reference"
        depends_on = ["extrct"]
        priority = 11

        [tasks.a]
        call = "os:getcwd"
        depends_on = ["b"]
        [tasks.b]
        call = "os:getcwd"
        depends_on = ["a"]

        [[schedules]]
        task = "extract"
        cron = "61 * * * *"
        timezone = "Europe/Berln"

        [[schedules]]
        task = "nope"
        interval = 0
    """)
    problems = validate_config(path, imports=False)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == problems
    assert str(path) in str(info.value)
    text = "\n".join(problems)
    assert "taskloom.queue: no queue strategy 'prio'; registered: " in text
    assert "fifo" in text and "did you mean 'priority'?" in text
    assert "taskloom.max_worker: unknown key; did you mean 'max_workers'?" in problems
    assert "tasks.extract.retires: unknown key; did you mean 'retry'?" in problems
    assert "tasks.transform.depends_on[0]: unknown task 'extrct'; did you mean 'extract'?" \
        in problems
    assert "tasks.transform.priority: must be >= 1 and <= 10, got 11" in problems
    assert "tasks.transform.call: expected 'module:function', got 'not a reference'" in problems
    assert "tasks.a.depends_on: dependency cycle: a -> b -> a" in problems
    assert "schedules[0].cron: cron expression '61 * * * *': field 1 (minute) is invalid: '61'" \
        in problems
    assert "schedules[0].timezone: unknown time zone 'Europe/Berln': expected an IANA name " \
        "such as 'Europe/Berlin' or 'UTC'" in problems
    assert "schedules[1].task: unknown task 'nope'" in problems
    assert "schedules[1].interval: must be more than 0 seconds, got 0" in problems
    assert len(problems) == 11


def test_unknown_plugin_section_and_undeclared_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [taskloom.nosuchplugin]
        x = 1

        [taskloom.otel]
        exporter = "console"
        colour = "blue"
    """)
    problems = validate_config(path)
    assert problems[0].startswith("taskloom.nosuchplugin: unknown plugin section")
    assert any(p.startswith("taskloom.otel.colour: unknown key") for p in problems)


def test_plugins_declare_their_sections_through_the_registry(tmp_path: Path) -> None:
    from taskloom import hookimpl, load_plugins

    class Declares:
        @hookimpl
        def taskloom_register(self, registry: object) -> None:
            registry.add_config_section("mine", {"level": int, "name": str})  # type: ignore[attr-defined]

    plugins = load_plugins(plugins=[Declares()])
    good = write(tmp_path, "[taskloom.mine]\nlevel = 3\nname = 'x'\n")
    assert validate_config(good, plugins=plugins) == []
    bad = write(tmp_path, "[taskloom.mine]\nlevel = 'high'\n", "bad.toml")
    assert validate_config(bad, plugins=plugins) == [
        "taskloom.mine.level: expected an integer, got a string ('high')"]


def test_pyproject_tool_table_and_its_key_paths(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [project]
        name = "demo"

        [tool.taskloom]
        queue = "lifo"

        [tool.taskloom.tasks.one]
        call = "os:getcwd"
        priority = 0
    """, "pyproject.toml")
    assert validate_config(path) == ["tool.taskloom.tasks.one.priority: must be >= 1 and <= 10, "
                                     "got 0"]
    ok = write(tmp_path, '[tool.taskloom]\nqueue = "lifo"\n[tool.taskloom.tasks.one]\n'
               'call = "os:getcwd"\n',
               "pyproject.toml")
    config = load_config(ok)
    assert config.settings["queue"] == "lifo" and list(config.tasks) == ["one"]


def test_file_is_found_in_parent_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[taskloom]\nqueue = "fifo"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.delenv("TASKLOOM_CONFIG", raising=False)
    config = load_config(env={})
    assert config.path == tmp_path / "taskloom.toml"
    assert config.settings["queue"] == "fifo"


def test_environment_and_set_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[taskloom]\nexecutor = "thread"\n[tasks.t]\ncall = "os:getcwd"\n'
                           'retry = 1\n')
    env = {"TASKLOOM_QUEUE": "fifo", "TASKLOOM_EXECUTOR__MAX_WORKERS": "4",
           "TASKLOOM_DISABLE_PLUGINS": "x", "TASKLOOM_HOME": "/elsewhere", "PATH": "/bin"}
    config = load_config(path, ["tasks.t.retry=5", "taskloom.strict=false"], env=env)
    assert config.settings["queue"] == "fifo"
    assert config.settings["executor"] == {"kind": "thread", "max_workers": 4}
    assert config.settings["strict"] is False
    assert config.tasks["t"]["retry"] == 5
    problems = validate_config(path, ["taskloom.queue=prio"], env={})
    assert problems[0].endswith("(from --set taskloom.queue=prio)")
    problems = validate_config(path, env={"TASKLOOM_MAX_WORKERS": "0"})
    assert problems == ["taskloom.max_workers: must be >= 1, got 0 "
                        "(from environment TASKLOOM_MAX_WORKERS)"]


def test_values_are_read_as_toml() -> None:
    assert parse_value("4") == 4
    assert parse_value("true") is True
    assert parse_value('["a", "b"]') == ["a", "b"]
    assert parse_value("fifo") == "fifo"
    assert env_overrides({"TASKLOOM_OTEL__EXPORTER": "console"}) == [
        (("taskloom", "otel", "exporter"), "console", "environment TASKLOOM_OTEL__EXPORTER")]
    assert format_path(("tasks", "my task", "depends_on", 0)) == 'tasks."my task".depends_on[0]'


def test_a_failed_import_names_the_task(tmp_path: Path) -> None:
    (tmp_path / "steps_imp.py").write_text(BODY)
    path = write(tmp_path, """
        [tasks.load]
        call = "steps_imp:lode"
        [tasks.other]
        call = "missing_module_xyz:run"
    """)
    config = load_config(path)
    with pytest.raises(ConfigError) as info:
        config.build_tasks()
    problems = info.value.problems
    assert problems[0].startswith("tasks.load.call: cannot import 'steps_imp:lode' for task "
                                  "'load': AttributeError")
    assert problems[1].startswith("tasks.other.call: cannot import 'missing_module_xyz:run' "
                                  "for task 'other': ModuleNotFoundError")
    assert validate_config(path) == problems


def test_schedules_are_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.job]
        call = "os:getcwd"
        [[schedules]]
        task = "job"
        cron = "30 2 * * *"
        timezone = "Europe/Berlin"
        coalesce = true
        [[schedules]]
        task = "job"
        interval = { minutes = 5 }
        jitter = 2
        [[schedules]]
        task = "job"
        at = 2030-01-02T03:04:05Z
    """)
    cron, every, once = load_config(path).schedules
    assert (cron.trigger, cron.options) == ("cron", {"expression": "30 2 * * *",
                                                     "timezone": "Europe/Berlin"})
    assert cron.coalesce is True
    assert (every.trigger, every.interval, every.jitter) == ("interval", 300.0, 2)
    assert once.trigger == "date" and once.at is not None and once.at.year == 2030


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[taskloom\nqueue = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith("invalid TOML")
    assert info.value.source == str(path)


def test_policy_plugins_check_task_options_at_validation(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.x]
        call = "os:getcwd"
        retry = { max_retries = 2, backof = "linear" }
        circuit_breaker = { failure_threshold = 0 }
        cache = { ttl = -5 }
    """)
    problems = validate_config(path)
    assert "tasks.x.cache.ttl: must be a number >= 0, got -5" in problems
    assert "tasks.x.circuit_breaker.failure_threshold: must be an integer >= 1, got 0" \
        in problems
    assert any(p.startswith("tasks.x.retry.backof: unknown key") for p in problems)
    assert len(problems) == 3


def test_task_options_come_from_plugins_and_a_disabled_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "steps_opt.py").write_text(BODY)
    path = write(tmp_path, """
        [taskloom]
        disable_plugins = ["retry"]

        [tasks.extract]
        call = "steps_opt:extract"
        retry = 3
        timeout = 0
        cache = true
    """)
    problems = validate_config(path)
    assert "tasks.extract.retry: option 'retry' needs plugin 'retry', which is disabled" \
        in problems
    assert any(p.startswith("tasks.extract.timeout: ") for p in problems)  # timeout's check
    assert len(problems) == 2
    path.write_text(path.read_text().replace('disable_plugins = ["retry"]', "")
                    .replace("timeout = 0", "timeout = 30"))
    task = load_config(path).build_tasks()[0]
    assert task.options == {"retry": 3, "timeout": 30, "cache": True}


@given(st.lists(st.text(min_size=1, max_size=8).filter(lambda s: not s.isdigit()),
                min_size=1, max_size=5))
def test_a_formatted_key_path_reads_back_as_the_same_path(path: list[str]) -> None:
    assert _split_key(format_path(tuple(path))) == tuple(path)


def test_set_accepts_paths_as_problems_print_them(tmp_path: Path) -> None:
    path = write(tmp_path, '[tasks.job]\ncall = "os:getcwd"\n[[schedules]]\ntask = "job"\n'
                           'cron = "61 * * * *"\n')
    assert validate_config(path) == [
        "schedules[0].cron: cron expression '61 * * * *': field 1 (minute) is invalid: '61'"]
    config = load_config(path, ['schedules[0].cron="0 3 * * *"'], env={})
    assert config.schedules[0].cron == "0 3 * * *"
    config = load_config(path, ["schedules.0.jitter=5", "schedules.0.cron='0 4 * * *'"], env={})
    assert config.schedules[0].jitter == 5
