"""The plugin authors' kit itself: the fixtures of ``taskloom.testing``."""

import pytest

from taskloom import Engine, FakeClock, PluginSet, Task, hookimpl, load_plugins
from taskloom.testing import HookRecorder, PluginRegistrar

pytest_plugins = ["pytester"]


class Greeter:
    @hookimpl
    def taskloom_run_start(self, run):
        run.data["greeted"] = True


@pytest.mark.taskloom(entry_points=False, plugins=[Greeter()])
def test_marker_without_entry_points(taskloom_plugins):
    assert isinstance(taskloom_plugins, PluginSet)
    assert taskloom_plugins.registry.names("queue") == []
    assert "Greeter-0" in taskloom_plugins.infos


@pytest.mark.taskloom(only=["queues"])
def test_marker_only_some_entry_points(taskloom_plugins):
    assert "priority" in taskloom_plugins.registry.names("queue")
    assert taskloom_plugins.registry.names("executor") == []
    assert taskloom_plugins.infos["executors"].disabled


def test_each_test_gets_its_own_plugin_set(taskloom_plugins, taskloom_engine, fake_clock):
    assert taskloom_engine.plugins is taskloom_plugins
    assert taskloom_engine.clock is fake_clock
    assert isinstance(fake_clock, FakeClock)
    other = load_plugins()
    assert other.pm is not taskloom_plugins.pm


@pytest.mark.taskloom(engine={"max_workers": 1, "queue": "fifo"})
def test_marker_engine_options(taskloom_engine):
    assert taskloom_engine.queue_name == "fifo"
    assert taskloom_engine.create_executor(None).max_workers == 1


def test_manager_fixture_runs_tasks(taskloom_manager, hook_recorder):
    task = taskloom_manager.create_task("double", fn=lambda: 21 * 2)
    assert taskloom_manager.execute_task(task.id) == 42
    hook_recorder.assert_called("taskloom_task_transition", task="double", new="completed")


def test_register_plugin_is_undone():
    ps = load_plugins(entry_points=False)
    registrar = PluginRegistrar(lambda: ps)
    name = registrar(Greeter(), name="greeter")
    assert ps.pm.get_plugin(name) is not None
    registrar.undo()
    assert ps.pm.get_plugin("greeter") is None
    assert not ps.hook.taskloom_run_start.get_hookimpls()


def test_register_plugin_fixture_registers_into_taskloom_plugins(
    register_plugin, taskloom_engine
):
    register_plugin(Greeter(), name="greeter")
    run = taskloom_engine.open_run()
    run.add([Task("a")])
    run.start()
    run.wait(10)
    run.close()
    assert run.data == {"greeted": True}


def test_recorder_helpers(taskloom_engine, hook_recorder):
    taskloom_engine.run([Task("a", fn=lambda: 1)])
    with pytest.raises(AssertionError, match="was not called"):
        hook_recorder.assert_called("taskloom_task_overrun")
    with pytest.raises(AssertionError, match="called 3 times, expected 1"):
        hook_recorder.assert_called("taskloom_task_transition", times=1)
    with pytest.raises(AssertionError, match="was called 1 times"):
        hook_recorder.assert_not_called("taskloom_run_start")
    with pytest.raises(AssertionError, match="not called in order"):
        hook_recorder.assert_order("taskloom_run_finish", "taskloom_run_start")
    with pytest.raises(AssertionError, match="exactly one call"):
        hook_recorder.getcall("taskloom_task_transition")
    with pytest.raises(ValueError, match="not a taskloom hook"):
        hook_recorder.calls("taskloom_task_finish")
    call = hook_recorder.getcall("taskloom_task_transition", new="running")
    assert (call.task.name, call.old.value) == ("a", "ready")
    with pytest.raises(AttributeError):
        _ = call.nonexistent
    hook_recorder.clear()
    assert hook_recorder.names() == []


def test_recorder_close_stops_recording_and_removes_the_probe():
    ps = load_plugins()
    recorder = HookRecorder(ps)
    assert ps.flags.transition
    Engine(plugins=ps).run([Task("a")])
    recorded = len(recorder.names())
    assert recorded >= 5
    recorder.close()
    assert not ps.flags.transition
    Engine(plugins=ps).run([Task("b")])
    assert len(recorder.names()) == recorded


def test_recorder_without_probe_sees_only_implemented_hooks():
    ps = load_plugins()
    recorder = HookRecorder(ps, probe=False)
    Engine(plugins=ps).run([Task("a")])
    names = set(recorder.names())
    recorder.close()
    assert {"taskloom_run_start", "taskloom_run_finish"} <= names
    # The engine skips per-task hooks that no plugin implements; the recorder sees the rest.
    implemented = {n for n in names if getattr(ps.hook, n).get_hookimpls()}
    assert names - implemented <= {"taskloom_run_start", "taskloom_run_finish"}
    if not ps.hook.taskloom_task_transition.get_hookimpls():
        assert "taskloom_task_transition" not in names


def test_open_runs_are_cancelled_after_the_test(pytester):
    pytester.makepyfile(
        """
        import threading

        import pytest

        from taskloom import Task

        pytestmark = pytest.mark.taskloom(only=["queues", "executors"])
        left_open = []
        release = threading.Event()

        def test_leaves_a_run_open(taskloom_engine):
            started = threading.Event()

            def body(context):
                started.set()
                context.token.wait(10)

            run = taskloom_engine.open_run()
            run.add([Task("stuck", fn=body), Task("later", dependencies=["stuck"])])
            run.start()
            assert started.wait(10)
            left_open.append(run)

        def test_the_run_was_closed():
            (run,) = left_open
            assert run.status == "cancelled"
            assert run.tasks["stuck"].status.value == "cancelled"
            assert run.tasks["later"].status.value == "cancelled"

        @pytest.mark.taskloom(bogus=1)
        def test_unknown_marker_keyword(taskloom_plugins):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "taskloom.testing")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*takes keywords*bogus*"])


def test_the_core_does_not_import_the_kit_or_pytest():
    import subprocess
    import sys

    code = ("import sys, taskloom; taskloom.Engine().run([taskloom.Task('a')]); "
            "print('pytest' in sys.modules, 'taskloom.testing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_recorder_knows_hooks_plugins_declare(hook_recorder, taskloom_plugins):
    taskloom_plugins.hook.taskloom_circuit_change(key="task:a", old="closed", new="open",
                                                  task=None)
    assert hook_recorder.calls("taskloom_circuit_change", key="task:a")
    with pytest.raises(ValueError, match="not a taskloom hook"):
        hook_recorder.calls("taskloom_no_such_hook")
