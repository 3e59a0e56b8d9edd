"""The logging plugin: one structured record per lifecycle event, quiet by default."""

import logging

import pytest

from taskloom import ConfigError, Engine, Retry, Task, hookimpl, load_plugins
from taskloom_std.observability import logging as logging_plugin

EVENTS = "taskloom.events"


class RetryFlakyOnce:
    @hookimpl(tryfirst=True)
    def taskloom_task_error(self, task, error, attempt, run):
        if task.name == "flaky" and attempt.number == 1:
            return Retry(0)
        return None


def flaky_body():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt fails")
        return 2

    return flaky


def boom():
    raise RuntimeError("boom")


def engine(config=None):
    return Engine(plugins=load_plugins(plugins=[RetryFlakyOnce()], config=config or {}),
                  max_workers=1)


def records(caplog):
    return [r for r in caplog.records if r.name == EVENTS]


def test_quiet_by_default_and_no_per_task_observer(caplog):
    caplog.set_level(logging.WARNING, logger="taskloom")
    eng = engine()
    present = []

    def look():
        present.append(eng.plugins.pm.get_plugin(logging_plugin.OBSERVER))

    summary = eng.run([Task("look", fn=look), Task("bad", fn=boom)])
    assert summary.counts == {"completed": 1, "failed": 1}
    assert records(caplog) == []
    assert present == [None]


def test_one_record_per_lifecycle_event_with_its_fields(caplog):
    caplog.set_level(logging.INFO, logger="taskloom")
    eng = engine()
    summary = eng.run([
        Task("flaky", fn=flaky_body()),
        Task("bad", fn=boom),
        Task("after", fn=lambda: 1, dependencies=["bad"]),
    ], name="nightly")
    recs = records(caplog)
    events = [r.event for r in recs]
    assert events[0] == "run.start" and events[-1] == "run.finish"
    assert recs[0].tasks == 3 and recs[0].run_name == "nightly"
    assert recs[0].counts == {"ready": 2, "waiting": 1}

    def of(task):
        return [(r.event, r.old_state, r.state) for r in recs
                if getattr(r, "task", None) == task and r.event.startswith("task.")]

    assert of("flaky") == [
        ("task.running", "ready", "running"),
        ("task.retrying", "running", "retrying"),
        ("task.running", "retrying", "running"),
        ("task.completed", "running", "completed"),
    ]
    assert of("bad") == [("task.running", "ready", "running"),
                         ("task.failed", "running", "failed")]
    assert of("after") == [("task.failed", "waiting", "failed")]

    attempts = [r for r in recs if r.event == "attempt.finish"]
    assert sorted((r.task, r.attempt, getattr(r, "error_type", "")) for r in attempts) == [
        ("bad", 1, "RuntimeError"), ("flaky", 1, "ValueError"), ("flaky", 2, ""),
    ]
    assert all(r.duration is not None for r in attempts)
    failed = next(r for r in recs if r.event == "task.failed" and r.task == "bad")
    assert failed.error == "boom" and failed.error_type == "RuntimeError"
    assert failed.run_id == summary.id and failed.task_id
    assert failed.getMessage() == "task bad: running -> failed (boom)"
    finish = recs[-1]
    assert finish.status == "failed" and finish.counts == summary.counts
    assert all(r.levelno == logging.INFO for r in recs)
    # The observer left with the run.
    assert eng.plugins.pm.get_plugin(logging_plugin.OBSERVER) is None


def test_level_from_config(caplog):
    caplog.set_level(logging.INFO, logger="taskloom")
    engine({"logging": {"level": "DEBUG"}}).run([Task("a", fn=lambda: 1)])
    assert records(caplog) == []  # DEBUG records, logger at INFO: nothing, not even checked

    caplog.set_level(logging.DEBUG, logger="taskloom")
    engine({"logging": {"level": "DEBUG"}}).run([Task("a", fn=lambda: 1)])
    recs = records(caplog)
    assert recs and all(r.levelno == logging.DEBUG for r in recs)


def test_disabled_in_config(caplog):
    caplog.set_level(logging.INFO, logger="taskloom")
    engine({"logging": {"enabled": False}}).run([Task("a", fn=lambda: 1)])
    assert records(caplog) == []


def test_bad_level_is_a_configuration_error():
    with pytest.raises(ConfigError, match="logging.level: unknown level 'LOUD'"):
        load_plugins(config={"logging": {"level": "LOUD"}})


def test_schedule_and_circuit_events(caplog):
    from datetime import datetime, timezone

    caplog.set_level(logging.INFO, logger="taskloom")
    ps = load_plugins()

    class Job:
        id = "nightly"

    due = datetime(2026, 3, 1, tzinfo=timezone.utc)
    ps.hook.taskloom_schedule_fire(job=Job(), scheduled_for=due, fired_at=due)
    ps.hook.taskloom_schedule_misfire(job=Job(), scheduled_for=due, fired_at=due)
    task = Task("api")
    ps.hook.taskloom_circuit_change(key="task:api", old="closed", new="open", task=task)
    recs = records(caplog)
    assert [r.event for r in recs] == ["schedule.fire", "schedule.misfire", "circuit.change"]
    assert recs[0].job_id == "nightly" and recs[0].scheduled_for == due
    assert (recs[2].key, recs[2].old_state, recs[2].state, recs[2].task) == (
        "task:api", "closed", "open", "api")
