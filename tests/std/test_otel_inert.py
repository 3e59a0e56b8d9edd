"""With no OpenTelemetry SDK configured the otel plugin is inert: nothing per attempt, nothing
per state change, not even an import of the SDK."""

import subprocess
import sys
import textwrap

from opentelemetry.sdk.trace import TracerProvider

from taskloom import Engine, Task, load_plugins
from taskloom_std.observability import otel


def _plan_wrappers(tasks):
    return [w for t in tasks for w in t._plan.wrappers]


def test_no_sdk_means_no_wrapper_and_an_untraced_run():
    # This test process has the API imported but never installs a global provider.
    engine = Engine(max_workers=2)
    tasks = [Task(f"t{i}", fn=lambda: 1) for i in range(50)]
    run = engine.open_run()
    run.add(tasks)
    assert not any(isinstance(w, otel.AttemptSpan) for w in _plan_wrappers(tasks))
    run.start()
    run.wait()
    run.close()
    assert run.stash[otel.RUN_KEY] is False
    assert not any(len(t.stash) for t in tasks)


def test_the_otel_plugin_adds_no_per_task_hook_when_inert():
    with_otel = load_plugins()
    without = load_plugins(config={"disable_plugins": ["otel"]})
    Engine(plugins=with_otel).run([Task("a", fn=lambda: 1)])
    # Flags the engine reads per task: the same with and without the plugin.
    for flag in ("transition", "attempt_finish", "task_error"):
        assert getattr(with_otel.flags, flag) == getattr(without.flags, flag), flag


def test_disabled_in_config_is_inert_even_with_a_provider():
    tp = TracerProvider()
    ps = load_plugins(config={"otel": {"tracer_provider": tp, "enabled": False}})
    task = Task("a", fn=lambda: 1)
    Engine(plugins=ps).run([task])
    assert not any(isinstance(w, otel.AttemptSpan) for w in task._plan.wrappers)


def test_no_opentelemetry_import_unless_the_application_made_one(tmp_path):
    code = textwrap.dedent("""
        import sys
        from taskloom import Engine, Task
        from taskloom_std.observability import otel

        engine = Engine(max_workers=2)
        assert "otel" in engine.plugins.infos and not engine.plugins.infos["otel"].error
        summary = engine.run([Task(f"t{i}", fn=lambda: 1) for i in range(100)])
        assert summary.ok
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print(loaded)
        assert loaded == [], loaded
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
