"""Checks that catch mistakes before a run: body parameters nothing fills, tasks with nothing
to run, hard timeouts an executor cannot keep, every problem of a table, finite numbers,
and the context ``when`` predicates receive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_files import write

from taskloom import (
    ConfigError,
    Engine,
    Task,
    TaskContext,
    hookimpl,
    load_config,
    load_plugins,
    validate_config,
)
from taskloom.api.workflows import ConditionContext, run_flow

STEPS = """
def clean():
    return [1, 2]

def train(cleaned):
    return len(cleaned)

def defaulted(cleaned=None, *, context):
    return cleaned

def loose(clean, **rest):
    return clean

def strict_extra(clean, model, **rest):
    return clean

def wants_two(clean, clena):
    return clean
"""


# -- body parameters ------------------------------------------------------------------------
def test_validate_names_the_task_the_parameter_and_the_dependency_it_could_mean(
        tmp_path: Path) -> None:
    (tmp_path / "params_steps.py").write_text(STEPS)
    path = write(tmp_path, """
        [tasks.clean]
        call = "params_steps:clean"
        [tasks.train]
        call = "params_steps:train"
        depends_on = ["clean"]
        [tasks.defaulted]
        call = "params_steps:defaulted"
        depends_on = ["clean"]
        [tasks.loose]
        call = "params_steps:loose"
        depends_on = ["clean"]
        [tasks.strict_extra]
        call = "params_steps:strict_extra"
        depends_on = ["clean"]
    """)
    assert validate_config(path, env={}) == [
        "tasks.train.call: parameter 'cleaned' of the body matches no dependency (depends on: "
        "clean) and has no default; did you mean 'clean'?",
        "tasks.strict_extra.call: parameter 'model' of the body matches no dependency "
        "(depends on: clean) and has no default",
    ]
    assert validate_config(path, env={}, imports=False) == []  # bodies are not imported


def test_run_add_refuses_the_batch_before_anything_starts() -> None:
    ran: list[str] = []

    def clean() -> list[int]:
        ran.append("clean")
        return [1]

    def train(cleaned: list[int]) -> int:
        return len(cleaned)

    first, second = Task("clean", fn=clean), Task("train", fn=train, dependencies=["clean"])
    with pytest.raises(ConfigError) as err:
        Engine().run([first, second])
    assert err.value.problems == [
        "task 'train': parameter 'cleaned' of the body matches no dependency (depends on: "
        "clean) and has no default; did you mean 'clean'?"]
    assert ran == [] and first.attempts == 0


def test_parameters_the_engine_fills_and_several_close_matches() -> None:
    def with_context(context: TaskContext, clean: int) -> int:
        return clean

    def two(clean: int, clena: int) -> int:
        return clean

    class Subclassed(Task):
        def execute(self, raw: int) -> int:  # type: ignore[override]
            return raw

    summary = Engine().run([Task("clean", fn=lambda: 1),
                            Task("ok", fn=with_context, dependencies=["clean"])])
    assert summary.results == {"clean": 1, "ok": 1}
    with pytest.raises(ConfigError, match=r"parameter 'clena' .* did you mean 'clean'\?"):
        Engine().run([Task("clean", fn=lambda: 1), Task("two", fn=two, dependencies=["clean"])])
    with pytest.raises(ConfigError, match=r"task 'sub': parameter 'raw' .*\(depends on: nothing"):
        Engine().run([Subclassed("sub")])


# -- nothing to run --------------------------------------------------------------------------
def test_a_table_without_call_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.publish]
        call = "os:getcwd"
        [tasks.pubish]
        retry = 5
    """)
    problems = validate_config(path, env={})
    assert problems == ['tasks.pubish: no call = "module:function": a task needs something to '
                        "run; did you mean 'publish'?"]
    with pytest.raises(ConfigError):
        load_config(path, env={})
    made = validate_config(path, ["tasks.nosuch.retry=2", "tasks.publish.retry=3"], env={})
    assert made[1] == ('tasks.nosuch: no call = "module:function": a task needs something to '
                       "run (the table was made by --set tasks.nosuch.retry=2)")
    assert len(made) == 2


# -- hard timeouts ---------------------------------------------------------------------------
def test_a_hard_timeout_needs_an_executor_that_can_stop_a_body(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.a]
        call = "os:getcwd"
        timeout = { soft = 1, hard = 2 }
        [tasks.b]
        call = "os:getcwd"
        executor = "process"
        timeout = { hard = 2 }
        [tasks.c]
        call = "os:getcwd"
        executor = "asyncio"
        timeout = { hard = 2 }
    """)
    assert validate_config(path, env={}) == [
        "tasks.a.timeout.hard: the 'thread' executor cannot stop a running body; executors "
        "that can: 'process' (executor = \"process\" on the task or in [taskloom]); or use a "
        "soft timeout",
        "tasks.c.timeout.hard: the 'asyncio' executor cannot stop a running body; executors "
        "that can: 'process' (executor = \"process\" on the task or in [taskloom]); or use a "
        "soft timeout",
    ]
    problems = validate_config(path, ['taskloom.executor="process"'], env={})
    assert [p.split(":")[0] for p in problems] == ["tasks.c.timeout.hard"]


# -- every problem, finite numbers ------------------------------------------------------------
def test_every_problem_of_a_plugin_checked_table_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [taskloom.retry]
        max_retries = -1
        backoff = "nope"

        [tasks.a]
        call = "os:getcwd"
        retry = { max_retries = -1, backoff = "nope", base_delay = -3 }
        timeout = { soft = -1, hard = -2 }
        circuit_breaker = { failure_threshold = 0, recovery_timeout = -1 }
    """)
    problems = validate_config(path, env={})
    for expected in (
        "taskloom.retry.max_retries: must be an integer >= 0, got -1",
        "taskloom.retry.backoff: must be one of fixed, linear, exponential, got 'nope'",
        "tasks.a.retry.max_retries: must be an integer >= 0, got -1",
        "tasks.a.retry.backoff: must be one of fixed, linear, exponential, got 'nope'",
        "tasks.a.retry.base_delay: must be a number >= 0, got -3",
        "tasks.a.timeout.soft: must be a number >= 0, got -1",
        "tasks.a.timeout.hard: must be a number >= 0, got -2",
        "tasks.a.circuit_breaker.failure_threshold: must be an integer >= 1, got 0",
        "tasks.a.circuit_breaker.recovery_timeout: must be a number >= 0, got -1",
    ):
        assert expected in problems, (expected, problems)
    assert len(problems) == 9


def test_no_infinite_or_nan_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.a]
        call = "os:getcwd"
        timeout = inf
        [tasks.b]
        call = "os:getcwd"
        retry = { max_retries = 2, base_delay = nan, max_delay = inf }
        cache = { ttl = inf }
        [[schedules]]
        task = "a"
        interval = 5
        misfire_grace_time = inf
        [[schedules]]
        task = "a"
        cron = "0 3 * * *"
        jitter = 1e300
    """)
    assert sorted(validate_config(path, env={})) == sorted([
        "tasks.a.timeout: expected a finite number, got inf",
        "tasks.b.cache.ttl: must be a finite number >= 0, got inf",
        "tasks.b.retry.base_delay: must be a finite number >= 0, got nan",
        "tasks.b.retry.max_delay: must be a finite number >= 0, got inf",
        "schedules[0].misfire_grace_time: expected a finite number, got inf",
        "schedules[1].jitter: must be at most 3162240000 seconds (100 years), got 1e+300",
    ])


def test_the_task_api_refuses_non_finite_seconds_too() -> None:
    with pytest.raises(ConfigError, match=r"task 'a': timeout must be a finite number >= 0, "
                                          r"got nan"):
        Engine().run([Task("a", fn=lambda: 1, timeout=float("nan"))])
    with pytest.raises(ConfigError, match="retry.base_delay must be a finite number"):
        Engine().run([Task("a", fn=lambda: 1, retry={"base_delay": float("inf")})])


def test_a_far_timeout_does_not_stop_the_clock_for_later_ones() -> None:
    """A deadline of 1e300 seconds used to overflow the timer thread's wait and kill it:
    every later timeout of the process was silently ignored."""
    import threading

    engine = Engine()
    assert engine.run([Task("far", fn=lambda: 1, timeout=1e300)]).ok
    release = threading.Event()

    def stuck(context: TaskContext) -> None:
        context.token.wait(30)
        release.set()

    summary = engine.run([Task("near", fn=stuck, timeout=0.05)], timeout=30)
    assert summary.status == "failed" and "timed out" in summary.errors["near"]


def test_task_arguments_name_the_task_and_what_is_expected() -> None:
    for kwargs, message in (
        ({"dependencies": "clean"}, "task 't': dependencies must be a list of strings, got "
                                    "'clean'"),
        ({"dependencies": [1]}, "task 't': dependencies must be a list of non-empty strings, "
                                "got 1 in it"),
        ({"tags": 5}, "task 't': tags must be a list of strings, got 5"),
        ({"config": [1]}, "task 't': config must be a mapping, got [1]"),
        ({"options": "x"}, "task 't': options must be a mapping, got 'x'"),
        ({"description": 5}, "task 't': description must be a string, got 5"),
        ({"trigger_rule": ["always"]}, "task 't': unknown trigger_rule ['always']"),
    ):
        with pytest.raises((TypeError, ValueError)) as err:
            Task("t", **kwargs)
        assert str(err.value).startswith(message)


# -- when predicates ------------------------------------------------------------------------
def test_a_when_predicate_receives_the_context_object_bodies_receive() -> None:
    seen: list[Any] = []

    def predicate(context: ConditionContext) -> bool:
        seen.append(context)
        return bool(context.last_result)

    summary = run_flow(Engine(), [
        Task("a", fn=lambda: 2),
        Task("b", fn=lambda a: a * 10, dependencies=["a"], config={"limit": 3}),
    ], {"b": predicate}, data={"env": "test"})
    assert summary.results == {"a": 2, "b": 20}
    context = seen[0]
    assert isinstance(context, TaskContext)
    assert context.task.name == "b" and context.config == {"limit": 3}
    assert context.results["a"] == 2 and context.data == {"env": "test"}
    assert context.run_id == summary.id and not context.cancelled
    # the dict-style reads of earlier predicates, a snapshot of when it was asked
    assert context["last_result"] == 2 and context["task"] == "b"
    assert context["results"] == {"a": 2} and context["env"] == "test"
    assert "env" in context and context.get("nope", 7) == 7


# -- the documented pyproject layout --------------------------------------------------------
def test_the_documented_pyproject_example_is_valid(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "config.md").read_text()
    section = page.split("## In `pyproject.toml`", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = write(tmp_path, example, "pyproject.toml")
    assert validate_config(path, env={}, imports=False) == []
    config = load_config(path, env={})
    assert config.settings["otel"] == {"exporter": "none"} and config.settings["max_workers"] == 4
    assert list(config.tasks) == ["extract", "report"] and len(config.schedules) == 1
    broken = write(tmp_path, example.replace("max_workers = 4", "max_workers = 0").replace(
        'depends_on = ["extract"]', 'depends_on = ["extrakt"]'), "pyproject.toml")
    assert validate_config(broken, env={}, imports=False) == [
        "tool.taskloom.max_workers: must be >= 1, got 0",
        "tool.taskloom.tasks.report.depends_on[0]: unknown task 'extrakt'; did you mean "
        "'extract'?"]


@pytest.mark.parametrize(("trigger", "options"), [
    ("interval", "{seconds = 1e300}"),
    ("cron", '{expression = "* * * * *", jitter = 1e300}'),
    ("interval", "{seconds = 5, start = 9999-12-31T23:59:59}"),
    ("cron", '{expression = "0 3 * * *", timezone = 5}'),
])
def test_trigger_options_are_tried_as_the_scheduler_will_use_them(
        tmp_path: Path, trigger: str, options: str) -> None:
    """Options a trigger took and a running scheduler then crashed on are one problem each;
    the wording is the trigger's own (or names its plugin when it raised something else)."""
    path = write(tmp_path, f"""
        [tasks.a]
        call = "os:getcwd"
        [[schedules]]
        task = "a"
        trigger = "{trigger}"
        options = {options}
    """)
    problems = validate_config(path, env={})
    assert len(problems) == 1 and problems[0].startswith("schedules[0].trigger: "), problems


class Broken:
    """A trigger plugin whose trigger builds, then fails when asked for fire times."""

    class Trigger:
        def __init__(self, days: float) -> None:
            self.days = days

        def next_fire_time(self, after: Any) -> Any:
            import datetime as dt

            return after + dt.timedelta(days=self.days)

    @hookimpl
    def taskloom_register(self, registry: Any) -> None:
        registry.add("trigger", "every_days", self.Trigger)
        registry.add("trigger", "crashing", lambda **options: options["missing"])


def test_a_trigger_that_fails_is_named_with_its_plugin(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.a]
        call = "os:getcwd"
        [[schedules]]
        task = "a"
        trigger = "every_days"
        options = { days = 1e12 }
        [[schedules]]
        task = "a"
        trigger = "every_days"
        options = { days = 1 }
        [[schedules]]
        task = "a"
        trigger = "crashing"
    """)
    plugins = load_plugins(plugins=[Broken()])
    name = plugins.registry.owner("trigger", "every_days")
    assert name.startswith("Broken")
    first, second = validate_config(path, env={}, plugins=plugins)
    assert first.startswith(f"schedules[0].trigger: trigger 'every_days' (plugin {name!r}) "
                            "cannot compute its fire times from these options: OverflowError")
    assert second == (f"schedules[2].trigger: trigger 'crashing' (plugin {name!r}) failed on "
                      "these options: KeyError: 'missing'")


def test_a_conditional_task_is_checked_before_the_flow_starts() -> None:
    ran: list[str] = []

    def train(cleaned: int) -> int:
        return cleaned

    tasks = [Task("clean", fn=lambda: ran.append("clean")),
             Task("train", fn=train, dependencies=["clean"])]
    with pytest.raises(ConfigError, match="task 'train': parameter 'cleaned' of the body"):
        run_flow(Engine(), tasks, {"train": lambda context: True})
    assert ran == []


def test_plugin_sections_are_asked_one_by_one_and_print_full_key_paths(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [taskloom]
        webhook = 5

        [taskloom.otel]
        exporter = "zipkin"
    """)
    problems = validate_config(path, env={})
    assert len(problems) == 3
    assert any(p.startswith("taskloom.otel.exporter: unknown exporter 'zipkin'")
               for p in problems)
    assert any(p.startswith("taskloom.webhook: plugin 'webhook' crashed while checking its "
                            "configuration: TypeError: ") for p in problems)
    assert "taskloom.webhook: expected a table, got an integer (5)" in problems
