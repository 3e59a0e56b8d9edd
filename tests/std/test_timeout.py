"""Soft timeouts on the engine's clock: threads get their token set, coroutines are cancelled."""

import asyncio
import threading

import pytest

from taskloom import (
    ConfigError,
    Engine,
    FakeClock,
    Task,
    TaskState,
    TaskTimeout,
    UpstreamFailed,
    hookimpl,
    load_plugins,
)
from taskloom.testing import wait_until


class Overruns:
    def __init__(self):
        self.seen = []
        self.event = threading.Event()

    @hookimpl
    def taskloom_task_overrun(self, task, attempt, run):
        self.seen.append((task.name, attempt.number))
        self.event.set()


def test_soft_timeout_fails_the_task_sets_the_token_and_reports_the_overrun():
    clock = FakeClock()
    overruns = Overruns()
    engine = Engine(plugins=load_plugins(plugins=[overruns]), clock=clock, max_workers=4)
    started = threading.Event()
    observed = {}

    def stuck(context):
        started.set()
        observed["cancelled"] = context.token.wait(5)  # a real wait, ended by the token
        return "too late"

    slow = Task("slow", fn=stuck, timeout=30)
    after = Task("after", fn=lambda slow: slow, dependencies=["slow"])
    cleanup = Task("cleanup", fn=lambda: "cleaned", dependencies=["slow"],
                   trigger_rule="all_done")
    run = engine.open_run()
    run.add([slow, after, cleanup])
    run.start()
    assert started.wait(5)
    clock.advance(29.9)
    assert slow.status is TaskState.RUNNING
    clock.advance(0.1)
    assert run.wait(5)
    summary = run.close()
    assert slow.status is TaskState.FAILED
    assert isinstance(slow.exception, TaskTimeout) and slow.error_type == "TaskTimeout"
    assert "timed out after 30s" in slow.error
    assert isinstance(after.exception, UpstreamFailed) and after.status is TaskState.FAILED
    assert summary.results == {"cleanup": "cleaned"}
    assert overruns.event.wait(5)
    assert observed["cancelled"] is True and overruns.seen == [("slow", 1)]
    assert slow.result is None  # the late return is discarded


def test_timer_is_disarmed_when_the_call_returns_in_time():
    clock = FakeClock()
    engine = Engine(clock=clock)
    s = engine.run([Task(f"t{i}", fn=lambda: 1, timeout=5) for i in range(20)])
    assert s.ok and clock.pending_timers() == 0


def test_a_timed_out_attempt_is_retried():
    clock = FakeClock()
    engine = Engine(clock=clock, max_workers=2)
    calls = []

    def body(context):
        calls.append(context.attempt.number)
        if len(calls) == 1:
            context.token.wait(5)
            return "first"
        return "second"

    task = Task("t", fn=body, timeout={"soft": 10},
                retry={"max_retries": 1, "backoff": "fixed", "base_delay": 0})
    run = engine.open_run()
    run.add([task])
    run.start()
    wait_until(lambda: calls == [1])
    clock.advance(10)
    assert run.wait(5)
    assert run.close().ok and task.result == "second" and task.attempts == 2


@pytest.mark.parametrize("executor", ["thread", "asyncio", "inline"])
def test_a_hard_limit_is_refused_on_an_executor_that_cannot_stop_a_body(executor):
    engine = Engine(executor=executor)
    task = Task("t", fn=lambda: None, timeout={"soft": 1, "hard": 3})
    with pytest.raises(ConfigError) as err:
        engine.run([task])
    message = str(err.value)
    assert f"task 't': timeout.hard: the {executor!r} executor cannot stop a running body" \
        in message
    assert "executors that can: 'process'" in message and task.attempts == 0


def test_an_executor_declares_that_it_stops_bodies():
    from taskloom_std.executors.thread import ThreadExecutor

    class Killable(ThreadExecutor):
        name = "killable"
        hard_timeouts = True

    plugins = load_plugins()
    plugins.registry.add("executor", "killable", Killable)
    engine = Engine(plugins=plugins, executor="thread")
    refused = Task("refused", fn=lambda: 1, timeout={"hard": 3})
    with pytest.raises(ConfigError, match="executors that can: 'killable', 'process'"):
        engine.run([refused])
    engine = Engine(plugins=plugins, executor="killable")
    summary = engine.run([Task("t", fn=lambda: 1, timeout={"hard": 3})])
    assert summary.ok and summary.results == {"t": 1}


@pytest.mark.parametrize("executor", ["asyncio", "thread"])
def test_async_body_is_cancelled_at_the_deadline(executor):
    clock = FakeClock()
    engine = Engine(clock=clock, executor=executor)
    started = threading.Event()
    cancelled = threading.Event()

    async def waits_forever():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = Task("co", fn=waits_forever, timeout=2)
    run = engine.open_run()
    run.add([task])
    run.start()
    assert started.wait(5)
    clock.advance(2)
    assert run.wait(5)
    assert cancelled.wait(5)
    run.close()
    assert isinstance(task.exception, TaskTimeout)


@pytest.mark.parametrize(("timeout", "message"), [
    (-1, "task 'load': timeout must be a number >= 0"),
    (0, "task 'load': timeout must be a number > 0"),
    ("soon", "task 'load': timeout must be a number"),
    ({"soft": 5, "hard": 2}, "task 'load': timeout.soft must not be later than"),
    ({"medium": 3}, "task 'load': timeout.medium: unknown key"),
    ({}, "task 'load': timeout needs soft or hard"),
])
def test_invalid_timeouts_name_task_and_key(timeout, message):
    with pytest.raises(ConfigError) as info:
        Engine().run([Task("load", fn=lambda: 1, timeout=timeout)])
    assert message in str(info.value)


def test_a_timeout_needs_the_timeout_plugin():
    clock = FakeClock()
    engine = Engine(plugins=load_plugins(disable=["timeout"]), clock=clock)
    ran = []
    with pytest.raises(ConfigError, match="option 'timeout' needs plugin 'timeout', which "
                                          "is disabled"):
        engine.run([Task("t", fn=lambda: ran.append(1), timeout=1)])
    assert ran == [] and clock.pending_timers() == 0
