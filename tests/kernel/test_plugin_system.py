import subprocess
import sys
import textwrap

import pytest

from taskloom import Engine, PluginError, Task, TaskState, hookimpl, load_plugins
from taskloom.kernel import pluginmanager as pmod


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Install a throwaway distribution with ``taskloom`` entry points on sys.path."""

    def make(name, entry_points, modules):
        for mod, source in modules.items():
            (tmp_path / f"{mod}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[taskloom]\n{lines}\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        pmod._entry_points.cache_clear()

    yield make
    pmod._entry_points.cache_clear()
    for mod in ("tl_broken", "tl_typo", "tl_good", "tl_clash"):
        sys.modules.pop(mod, None)


def test_builtin_plugins_load_through_entry_points():
    ps = load_plugins()
    assert ps.infos["queues"].distribution == "taskloom"
    assert ps.infos["queues"].components == {"queue": ps.registry.names("queue")}
    assert "thread" in ps.registry.names("executor")
    assert ps.registry.owner("executor", "thread") == "executors"
    assert "taskloom_register" in ps.infos["executors"].hooks


def test_one_plugin_manager_per_engine():
    a, b = Engine(), Engine()
    assert a.plugins.pm is not b.plugins.pm


def test_import_loads_no_plugins():
    code = "import sys, taskloom; print(any(m.startswith('taskloom_std') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_broken_plugin_reported_by_name_and_rest_load(fake_dist, caplog):
    fake_dist("brokenplug", {"broken": "tl_broken"}, {"tl_broken": "import no_such_module_xyz\n"})
    ps = load_plugins()
    assert "ModuleNotFoundError" in ps.infos["broken"].error
    assert ps.infos["broken"].distribution == "brokenplug"
    assert "thread" in ps.registry.names("executor")
    assert "plugin 'broken' (tl_broken) failed to load" in caplog.text
    with pytest.raises(PluginError, match="plugin 'broken' \\(tl_broken\\) failed to load"):
        load_plugins(strict=True)
    with pytest.raises(PluginError, match="plugin 'broken'"):
        load_plugins(config={"strict": True})


def test_misspelled_hook_fails_fast(fake_dist):
    fake_dist("typoplug", {"typo": "tl_typo"}, {"tl_typo": """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_task_transtion(task, old, new, run):
            pass
    """})
    ps = load_plugins()
    assert "taskloom_task_transtion" in ps.infos["typo"].error
    assert ps.pm.get_plugin("typo") is None


def test_disable_by_config_and_environment(fake_dist, monkeypatch):
    fake_dist("goodplug", {"good": "tl_good"}, {"tl_good": """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_register(registry):
            registry.add("queue", "good", list)
    """})
    assert "good" in load_plugins().registry.names("queue")
    ps = load_plugins(config={"disable_plugins": ["good"]})
    assert ps.infos["good"].disabled and "good" not in ps.registry.names("queue")
    monkeypatch.setenv("TASKLOOM_DISABLE_PLUGINS", "good, other")
    assert load_plugins().infos["good"].disabled


def test_component_registered_twice_names_both(fake_dist):
    fake_dist("clashplug", {"clash": "tl_clash"}, {"tl_clash": """
        from taskloom import hookimpl

        @hookimpl
        def taskloom_register(registry):
            registry.add("executor", "thread", object)
    """})
    with pytest.raises(PluginError, match="executor 'thread' registered twice: by plugin "
                                          "'executors' and by plugin 'clash'"):
        load_plugins()


def test_unknown_component_kind():
    class Bad:
        @hookimpl
        def taskloom_register(self, registry):
            registry.add("gizmo", "x", object)

    with pytest.raises(PluginError, match="unknown component kind 'gizmo'"):
        load_plugins(plugins=[Bad()])


def test_trace_hooks_prints_calls():
    code = ("from taskloom import Engine, Task\n"
            "class P:\n"
            "    from taskloom import hookimpl\n"
            "    @hookimpl\n"
            "    def taskloom_task_transition(self, task, old, new, run): pass\n"
            "from taskloom import load_plugins\n"
            "Engine(plugins=load_plugins(plugins=[P()])).run([Task('a')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "TASKLOOM_TRACE_HOOKS": "1"}, check=True)
    assert "taskloom_task_transition" in out.stderr
    assert "taskloom_run_start" in out.stderr


def test_hooks_without_implementations_are_not_called():
    ps = load_plugins()
    called = []
    ps.pm.add_hookcall_monitoring(lambda name, impls, kw: called.append(name), lambda *a: None)
    Engine(plugins=ps).run([Task("a"), Task("b", dependencies=["a"])])
    per_task = {"taskloom_task_transition", "taskloom_attempt_finish", "taskloom_task_error",
                "taskloom_task_wrappers", "taskloom_task_prepare"}
    for name in per_task:
        if not getattr(ps.hook, name).get_hookimpls():
            assert name not in called


def test_configure_hook_receives_table_and_is_historic():
    got = []

    class Reader:
        @hookimpl
        def taskloom_configure(self, config):
            got.append(dict(config.get("reader", {})))

    ps = load_plugins(config={"reader": {"level": 3}})
    ps.register(Reader(), name="reader")
    assert got == [{"level": 3}]


def test_a_plugin_declares_its_own_hook_and_a_plugin_loaded_before_it_implements_it(fake_dist):
    fake_dist("alertsplug", {"a_listener": "tl_good", "z_owner": "tl_clash"}, {
        "tl_good": """
            from taskloom import hookimpl

            seen = []

            @hookimpl
            def taskloom_thing_happened(what):
                seen.append(what)
                raise RuntimeError("a listener's bug")
        """,
        "tl_clash": """
            from taskloom import hookimpl
            from taskloom.kernel.hookspecs import observer

            class Specs:
                @staticmethod
                @observer
                def taskloom_thing_happened(what):
                    '''A thing happened.'''

            @hookimpl
            def taskloom_addhooks(pluginmanager):
                pluginmanager.add_hookspecs(Specs)
        """,
    })
    ps = load_plugins(strict=True)
    assert ps.kind("taskloom_thing_happened").value == "observer"
    ps.hook.taskloom_thing_happened(what="x")  # the listener's failure is logged: an observer
    assert sys.modules["tl_good"].seen == ["x"]
    without = load_plugins(disable=["z_owner"])
    assert "taskloom_thing_happened" in without.infos["a_listener"].error
    assert without.get_plugin("a_listener") is None
    with pytest.raises(PluginError, match="plugin 'a_listener'.*disabled or missing"):
        load_plugins(disable=["z_owner"], strict=True)


def test_fast_hooks_go_through_pluggy_only_while_monitored():
    seen = []

    class Watcher:
        @hookimpl
        def taskloom_task_transition(self, task, old, new, run):
            seen.append(new.value)

    ps = load_plugins(plugins=[Watcher()], entry_points=False)
    called = []
    undo = ps.pm.add_hookcall_monitoring(lambda name, impls, kw: called.append(name),
                                         lambda *a: None)
    transition = ps.fast["taskloom_task_transition"]
    transition(Task("t"), TaskState.PENDING, TaskState.READY, None)
    assert called == ["taskloom_task_transition"] and seen == ["ready"]
    undo()
    undo()  # idempotent
    transition(Task("t"), TaskState.PENDING, TaskState.READY, None)
    assert called == ["taskloom_task_transition"] and seen == ["ready", "ready"]


def test_the_plugin_manager_uses_only_public_pluggy_api():
    import ast
    from pathlib import Path

    source = Path(pmod.__file__).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            owner = node.value
            assert isinstance(owner, ast.Name) and owner.id == "self", ast.unparse(node)
        if isinstance(node, ast.Assign):
            for target in node.targets:
                assert not (isinstance(target, ast.Attribute) and target.attr == "function")
