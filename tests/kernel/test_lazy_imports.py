"""`import taskloom` loads only the package file; every public name loads on first use.

Each check runs in a fresh interpreter and compares its modules with those of a bare one, so
a heavy import put back on the start-up path fails here, whatever the machine's speed.
"""

import json
import subprocess
import sys

import pytest

import taskloom

# What the package file itself may add to a bare interpreter.
PACKAGE_ONLY = {"__future__", "taskloom", "taskloom._version"}

# Costly imports of the engine, the plugins or the stdlib: none at `import taskloom`.
HEAVY = ("asyncio", "concurrent.futures", "dataclasses", "importlib.metadata", "inspect",
         "logging", "platform", "pluggy", "ssl", "threading", "typing", "uuid")


def _added_modules(code: str) -> set[str]:
    """Modules that running ``code`` adds to those of a bare interpreter."""
    dump = "import json, sys; print(json.dumps(sorted(sys.modules)))"

    def modules(body: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", f"{body}\n{dump}"], capture_output=True,
                             text=True, check=True, timeout=60).stdout
        return set(json.loads(out.splitlines()[-1]))

    return modules(code) - modules("pass")


def _in(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m in names or m.startswith(tuple(f"{n}." for n in names)))


def test_import_taskloom_loads_only_the_package_file():
    added = _added_modules("import taskloom")
    assert sorted(added - PACKAGE_ONLY) == []
    assert _in(added, HEAVY) == []


def test_dir_lists_every_public_name_before_any_loads():
    code = ("import sys, taskloom; names = dir(taskloom); "
            "print(set(taskloom.__all__) <= set(names), "
            "sorted(m for m in sys.modules if m.startswith('taskloom.kernel')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "True []"


def test_the_version_command_loads_only_its_own_module():
    code = ("import sys\nsys.argv[1:] = ['--version']\n"
            "from taskloom.app.command import main\nmain()")
    added = _added_modules(code)
    assert sorted(added - PACKAGE_ONLY - {"taskloom.app", "taskloom.app.command"}) == []


def test_the_click_group_answers_version_without_the_engine_or_plugins():
    code = ("from taskloom.app.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit as stop:\n"
            "    assert stop.code == 0, stop.code")
    added = _added_modules(code)
    assert "taskloom.app.cli" in added
    assert _in(added, ("taskloom.kernel", "taskloom.api", "taskloom_std", "pluggy",
                       "importlib.metadata", "asyncio", "concurrent.futures", "ssl",
                       "dataclasses", "logging")) == []


@pytest.mark.parametrize("names", ["Engine, Task", "TaskManager", "TaskQueue",
                                   "SequentialWorkflow"])
def test_loading_the_engine_scans_no_entry_points_and_skips_asyncio(names):
    # Entry points are read when an Engine is built, not when its module loads; asyncio
    # loads for async bodies only; uuid (and platform) when a run is made.
    added = _added_modules(f"from taskloom import {names}")
    assert _in(added, ("importlib.metadata", "taskloom_std", "asyncio", "ssl", "uuid",
                       "platform")) == []


def test_every_public_name_resolves():
    namespace: dict[str, object] = {}
    exec("from taskloom import *", namespace)
    for name in taskloom.__all__:
        assert namespace[name] is getattr(taskloom, name), name
    assert set(taskloom.__all__) <= set(dir(taskloom))
    assert taskloom.Engine is sys.modules["taskloom.kernel.engine"].Engine
    assert taskloom.TRANSITIONS is sys.modules["taskloom.kernel.states"].TRANSITIONS
    assert taskloom.load_config is sys.modules["taskloom.app.config"].load_config
    assert taskloom.TaskScheduler.job_class is taskloom.Job
    assert issubclass(taskloom.CircuitOpenError, taskloom.TaskloomError)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="'NoSuchThing'"):
        taskloom.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError, match="no_such_thing"):
        exec("from taskloom import no_such_thing", {})
