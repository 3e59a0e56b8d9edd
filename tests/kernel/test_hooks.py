"""Each engine hook, exercised through a real engine and observed with ``hook_recorder``."""

import threading

import pytest

from taskloom import ConfigError, Retry, Task, TaskState, hookimpl


def test_taskloom_register_adds_components_attributed_to_the_plugin(
    taskloom_plugins, register_plugin
):
    class Lifo(list):
        def push(self, item):
            self.append(item)

        def remove(self, item):
            list.remove(self, item)

    class Plugin:
        @hookimpl
        def taskloom_register(self, registry):
            registry.add("queue", "test-lifo", Lifo)

    register_plugin(Plugin(), name="test-lifo-plugin")
    assert "test-lifo" in taskloom_plugins.registry.names("queue")
    assert taskloom_plugins.registry.owner("queue", "test-lifo") == "test-lifo-plugin"


@pytest.mark.taskloom(config={"greeting": {"text": "hi"}})
def test_taskloom_configure_is_historic_and_recorded(
    taskloom_plugins, register_plugin, hook_recorder
):
    seen = []

    class Plugin:
        @hookimpl
        def taskloom_configure(self, config):
            seen.append(dict(config))

    register_plugin(Plugin(), name="late")
    # Registered after configuration: the historic hook replays the table at once.
    assert seen == [{"greeting": {"text": "hi"}}]

    replay = hook_recorder.getcall("taskloom_configure")
    assert replay.plugins == ("late",)
    assert replay.config == {"greeting": {"text": "hi"}}

    taskloom_plugins.configure({"greeting": {"text": "again"}})
    again = hook_recorder.calls("taskloom_configure")[-1]
    assert again.config == {"greeting": {"text": "again"}}
    assert "late" in again.plugins
    assert seen[-1] == {"greeting": {"text": "again"}}


def test_run_start_and_finish_bracket_the_run(taskloom_engine, hook_recorder):
    summary = taskloom_engine.run([Task("a", fn=lambda: 1)], name="nightly")

    start = hook_recorder.getcall("taskloom_run_start")
    finish = hook_recorder.getcall("taskloom_run_finish")
    assert start.run is finish.run
    assert start.run.name == "nightly"
    assert finish.summary is summary
    assert finish.summary.results == {"a": 1}
    hook_recorder.assert_order(
        "taskloom_run_start", "taskloom_task_transition", "taskloom_run_finish"
    )
    names = hook_recorder.names()
    assert names.index("taskloom_run_finish") == len(names) - 1


def test_task_transition_reports_every_state_change_in_order(taskloom_engine, hook_recorder):
    taskloom_engine.run([
        Task("a", fn=lambda: 1),
        Task("b", fn=lambda a: a + 1, dependencies=["a"]),
    ])
    assert hook_recorder.transitions("a") == [
        ("a", "pending", "ready"),
        ("a", "ready", "running"),
        ("a", "running", "completed"),
    ]
    assert hook_recorder.transitions("b") == [
        ("b", "pending", "waiting"),
        ("b", "waiting", "ready"),
        ("b", "ready", "running"),
        ("b", "running", "completed"),
    ]
    for call in hook_recorder.calls("taskloom_task_transition"):
        assert isinstance(call.old, TaskState)
        assert call.run is not None


def test_task_transition_for_an_upstream_failure(taskloom_engine, hook_recorder):
    def boom():
        raise RuntimeError("no data")

    summary = taskloom_engine.run([Task("a", fn=boom), Task("b", dependencies=["a"])])
    assert summary.status == "failed"
    assert hook_recorder.transitions("b")[-1] == ("b", "waiting", "failed")
    assert hook_recorder.calls("taskloom_task_transition", task="b", new="failed")


def test_task_prepare_only_for_tasks_with_options_and_can_reject_the_run(
    taskloom_engine, register_plugin, hook_recorder
):
    class Validator:
        @hookimpl
        def taskloom_register(self, registry):
            registry.add_task_option("sla", (int, float), "seconds the task may take")

        @hookimpl
        def taskloom_task_prepare(self, task, run):
            if task.options.get("sla", 0) < 0:
                raise ConfigError(f"task {task.name!r}: sla must be >= 0")

    register_plugin(Validator())
    taskloom_engine.run([Task("plain"), Task("with", options={"sla": 5})])
    hook_recorder.assert_called("taskloom_task_prepare", times=1, task="with")
    hook_recorder.assert_not_called("taskloom_task_prepare", task="plain")

    ran = []
    with pytest.raises(ConfigError, match="sla must be >= 0"):
        taskloom_engine.run([
            Task("ok", fn=lambda: ran.append("ok")),
            Task("bad", options={"sla": -1}),
        ])
    assert ran == []
    assert isinstance(hook_recorder.calls("taskloom_task_prepare", task="bad")[0].exception,
                      ConfigError)


def test_task_wrappers_wrap_every_attempt(taskloom_engine, register_plugin, hook_recorder):
    events = []

    def around(call, attempt):
        events.append(("before", attempt.task.name, attempt.number))
        result = call()
        events.append(("after", result))
        return result * 10

    class Wrapping:
        @hookimpl
        def taskloom_task_wrappers(self, task, run):
            return around if "wrap" in task.tags else None

    register_plugin(Wrapping())
    summary = taskloom_engine.run([Task("a", fn=lambda: 4, tags=["wrap"]), Task("b", fn=lambda: 5)])
    assert summary.results == {"a": 40, "b": 5}
    assert events == [("before", "a", 1), ("after", 4)]
    assert hook_recorder.getcall("taskloom_task_wrappers", task="a").result == [around]
    # A task without options or tags is not asked about: its wrappers are the run's.
    assert hook_recorder.calls("taskloom_task_wrappers", task="b") == []


def test_run_wrappers_are_asked_once_and_go_outside_the_tasks_own(
    taskloom_engine, register_plugin, hook_recorder
):
    events = []

    def outer(call, attempt):
        events.append(("run", attempt.task.name))
        return ("run", call())

    def inner(call, attempt):
        events.append(("task", attempt.task.name))
        return ("task", call())

    class Wrapping:
        @hookimpl
        def taskloom_run_wrappers(self, run):
            return outer

        @hookimpl
        def taskloom_task_wrappers(self, task, run):
            return inner if "inner" in task.tags else None

    register_plugin(Wrapping())
    summary = taskloom_engine.run([
        Task("a", fn=lambda: 1, tags=["inner"]), Task("b", fn=lambda: 2),
        Task("c", fn=lambda: 3),
    ])
    assert summary.results == {"a": ("run", ("task", 1)), "b": ("run", 2), "c": ("run", 3)}
    assert sorted(events) == [("run", "a"), ("run", "b"), ("run", "c"), ("task", "a")]
    assert len(hook_recorder.calls("taskloom_run_wrappers")) == 1


def test_task_error_decides_and_attempt_finish_reports_each_attempt(
    taskloom_engine, register_plugin, hook_recorder
):
    def flaky(context):
        if context.attempt.number < 3:
            raise ConnectionError(f"try {context.attempt.number}")
        return "ok"

    class RetryTwice:
        @hookimpl
        def taskloom_task_error(self, task, error, attempt, run):
            return Retry(0) if attempt.number < 3 else None

    register_plugin(RetryTwice())
    summary = taskloom_engine.run([Task("flaky", fn=flaky)])
    assert summary.results == {"flaky": "ok"}

    errors = hook_recorder.calls("taskloom_task_error")
    assert [c.attempt.number for c in errors] == [1, 2]
    assert [str(c.error) for c in errors] == ["try 1", "try 2"]
    assert all(isinstance(c.result, Retry) for c in errors)

    finishes = hook_recorder.calls("taskloom_attempt_finish", task="flaky")
    assert [c.attempt.number for c in finishes] == [1, 2, 3]
    assert [type(c.error).__name__ for c in finishes] == [
        "ConnectionError", "ConnectionError", "NoneType"
    ]
    assert finishes[-1].attempt.value == "ok"
    assert ("flaky", "running", "retrying") in hook_recorder.transitions("flaky")


def test_task_error_retry_delay_waits_for_the_clock(
    taskloom_engine, register_plugin, hook_recorder, fake_clock
):
    class RetryLater:
        @hookimpl
        def taskloom_task_error(self, task, error, attempt, run):
            return Retry(30.0) if attempt.number == 1 else None

    def once_broken(context):
        if context.attempt.number == 1:
            raise TimeoutError("slow upstream")
        return context.attempt.number

    retrying = threading.Event()

    class Watcher:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            if new is TaskState.RETRYING:
                retrying.set()

    register_plugin(RetryLater())
    register_plugin(Watcher())
    run = taskloom_engine.open_run()
    task = Task("t", fn=once_broken)
    run.add([task])
    run.start()
    assert retrying.wait(10)
    # The retry is on the engine's timer: nothing runs until the clock reaches it.
    fake_clock.advance(29.0)
    assert task.status is TaskState.RETRYING
    fake_clock.advance(1.0)
    assert run.wait(5)
    assert run.close().results == {"t": 2}
    hook_recorder.assert_called("taskloom_attempt_finish", times=2)


def test_task_overrun_reports_the_late_return_of_a_cancelled_attempt(
    taskloom_engine, register_plugin, hook_recorder
):
    started, release, overran = threading.Event(), threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return "late"

    class Watcher:
        @hookimpl
        def taskloom_task_overrun(self, task, attempt, run):
            overran.set()

    register_plugin(Watcher())
    run = taskloom_engine.open_run()
    task = Task("slow", fn=slow)
    run.add([task])
    run.start()
    assert started.wait(10)
    run.cancel_task(task)
    assert task.status is TaskState.CANCELLED
    release.set()
    assert overran.wait(10)
    call = hook_recorder.getcall("taskloom_task_overrun")
    assert call.task is task
    assert call.attempt.value == "late"
    run.close()
    assert task.result is None


def test_transition_observers_see_why_a_task_failed_or_was_cancelled(
    taskloom_engine, register_plugin
):
    seen = {}

    class Watcher:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            if new in (TaskState.FAILED, TaskState.CANCELLED):
                seen[task.name] = (new.value, task.error_type, task.error)

    def boom():
        raise ValueError("bad row")

    register_plugin(Watcher())
    taskloom_engine.run([Task("a", fn=boom), Task("b", dependencies=["a"])])
    assert seen["a"] == ("failed", "ValueError", "bad row")
    assert seen["b"][:2] == ("failed", "UpstreamFailed")
    assert "'a'" in seen["b"][2]

    run = taskloom_engine.open_run()
    queued = Task("queued")
    run.add([queued])
    run.cancel_task(queued)
    assert seen["queued"][:2] == ("cancelled", "TaskCancelled")
    run.close()


def _order_probe(label, calls, **opts):
    class Probe:
        @hookimpl(**opts)
        def taskloom_run_start(self, run):
            calls.append(label)

    return Probe()


@pytest.mark.taskloom(only=["queues", "executors"])
def test_documented_order_lifo_then_tryfirst_trylast(taskloom_engine, register_plugin,
                                                     hook_recorder):
    """docs/plugins.md: the plugin registered last runs first; tryfirst/trylast override."""
    calls = []
    register_plugin(_order_probe("late", calls, trylast=True), name="late")
    register_plugin(_order_probe("first", calls), name="first")
    register_plugin(_order_probe("second", calls), name="second")
    register_plugin(_order_probe("early", calls, tryfirst=True), name="early")
    taskloom_engine.run([])
    assert calls == ["early", "second", "first", "late"]
    assert hook_recorder.getcall("taskloom_run_start").plugins == (
        "early", "second", "first", "late"
    )


def test_entry_points_register_sorted_by_name(taskloom_plugins):
    """Entry points are registered in name order, so later names are called first."""
    names = [i.plugin_name for i in taskloom_plugins.hook.taskloom_register.get_hookimpls()
             if i.plugin_name in taskloom_plugins.infos]
    assert names == sorted(names)
    assert len(names) >= 2


def test_tryfirst_error_policy_decides_before_others(taskloom_engine, register_plugin):
    from taskloom import Fallback

    class Default:
        @hookimpl
        def taskloom_task_error(self, task, error, attempt, run):
            return Fallback("default")

    class Mine:
        @hookimpl(tryfirst=True)
        def taskloom_task_error(self, task, error, attempt, run):
            return Fallback("mine") if isinstance(error, ConnectionError) else None

    def refuse():
        raise ConnectionError("refused")

    register_plugin(Mine())
    register_plugin(Default())  # registered later: would be first without tryfirst
    summary = taskloom_engine.run([Task("a", fn=refuse), Task("b", fn=_fail_value)])
    assert summary.results == {"a": "mine", "b": "default"}


def _fail_value():
    raise ValueError("x")


def test_optionalhook_lets_a_plugin_implement_a_hook_taskloom_lacks(taskloom_plugins,
                                                                   register_plugin):
    from taskloom import PluginError

    class FromTheFuture:
        @hookimpl(optionalhook=True)
        def taskloom_task_teleport(self, task):
            raise AssertionError("never called")

        @hookimpl
        def taskloom_run_start(self, run):
            pass

    class Misspelled:
        @hookimpl
        def taskloom_task_transiton(self, task):
            pass

    register_plugin(FromTheFuture(), name="future")
    with pytest.raises(PluginError, match="taskloom_task_transiton"):
        register_plugin(Misspelled(), name="typo")
    assert taskloom_plugins.pm.get_plugin("typo") is None


def test_taskloom_attempt_failed_sees_every_failure_before_the_decision(
    taskloom_engine, register_plugin
):
    order = []

    class Counter:
        @hookimpl
        def taskloom_attempt_failed(self, task, error, attempt, run):
            order.append(("failed", attempt.number, type(error).__name__))

    class Decider:
        @hookimpl(tryfirst=True)
        def taskloom_task_error(self, task, error, attempt, run):
            order.append(("decide", attempt.number))
            return Retry(0.0) if attempt.number < 2 else None

    register_plugin(Counter())
    register_plugin(Decider())
    task = Task("flaky", fn=lambda: 1 / 0)
    taskloom_engine.run([task])
    assert task.status is TaskState.FAILED
    assert order == [("failed", 1, "ZeroDivisionError"), ("decide", 1),
                     ("failed", 2, "ZeroDivisionError"), ("decide", 2)]


def test_taskloom_addhooks_lets_a_plugin_declare_a_hook(taskloom_plugins, register_plugin):
    from taskloom.kernel.hookspecs import decision

    class Specs:
        @staticmethod
        @decision
        def taskloom_pick_colour(task):
            """Pick a colour."""

    class Owner:
        @hookimpl
        def taskloom_addhooks(self, pluginmanager):
            pluginmanager.add_hookspecs(Specs)

    class Picker:
        @hookimpl
        def taskloom_pick_colour(self, task):
            return "blue"

    register_plugin(Owner())  # historic: called at once on registration
    register_plugin(Picker())
    assert taskloom_plugins.kind("taskloom_pick_colour").value == "decision"
    assert taskloom_plugins.hook.taskloom_pick_colour(task=Task("t")) == "blue"
