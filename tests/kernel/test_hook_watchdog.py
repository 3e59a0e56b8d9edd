"""The hook watchdog: a plugin's hook call that runs past ``hook_watchdog`` seconds is logged,
naming the plugin and the hook, while it still runs."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from taskloom import Engine, Task, hookimpl, load_config, load_plugins, validate_config
from taskloom.kernel import pluginmanager
from taskloom.testing import wait_until

LOGGER = "taskloom.plugins"


class Hanging:
    """Blocks in one hook until released."""

    def __init__(self, hook: str) -> None:
        self.hook = hook
        self.release = threading.Event()

    @hookimpl
    def taskloom_attempt_finish(self, task: Any, run: Any) -> None:  # the engine's direct path
        if self.hook == "taskloom_attempt_finish":
            assert self.release.wait(30)

    @hookimpl
    def taskloom_run_start(self, run: Any) -> None:  # through pluggy
        if self.hook == "taskloom_run_start":
            assert self.release.wait(30)


def _warnings(caplog: pytest.LogCaptureFixture, plugin: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING and repr(plugin) in r.getMessage()]


@pytest.mark.parametrize("hook", ["taskloom_attempt_finish", "taskloom_run_start"])
def test_a_hanging_hook_is_logged_while_it_runs_and_again_later(hook: str, caplog: pytest.LogCaptureFixture):
    # A plugin set configured earlier in this process with a very long limit (the watchdog
    # thread then waits a quarter of it) must not delay the warnings of a short one.
    load_plugins(config={"hook_watchdog": 1e8})
    caplog.set_level(logging.WARNING, LOGGER)
    plugin = Hanging(hook)
    name = f"hanging-{hook}"
    plugins = load_plugins(config={"hook_watchdog": 0.2})
    plugins.register(plugin, name=name)
    engine = Engine(plugins=plugins, executor="inline")
    summaries: list[Any] = []
    runner = threading.Thread(
        target=lambda: summaries.append(engine.run([Task("t", fn=lambda: 1)])), name="runner"
    )
    runner.start()
    try:
        wait_until(lambda: _warnings(caplog, name), timeout=30)
        assert runner.is_alive() and not summaries  # logged while the call still blocks
        message = _warnings(caplog, name)[0]
        assert f"plugin {name!r} has been running {hook} for" in message
        assert "in thread 'runner'" in message
        wait_until(lambda: len(_warnings(caplog, name)) >= 2, timeout=30)  # again, twice as long
        first, second = (float(m.split(" for ")[1].split("s ")[0]) for m in _warnings(caplog, name)[:2])
        assert 0.2 <= first < second
    finally:
        plugin.release.set()
        runner.join(30)
    assert summaries and summaries[0].ok
    assert not [c for c in pluginmanager.CALLS.copy().values() if c[0] == name]


def test_fast_hooks_are_not_logged(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, LOGGER)
    plugins = load_plugins(config={"hook_watchdog": 5.0})
    plugins.register(Hanging("none"), name="quick")
    assert plugins.watchdog == 5.0
    summary = Engine(plugins=plugins, executor="inline").run(
        [Task(f"t{i}", fn=lambda: 1) for i in range(200)]
    )
    assert summary.ok
    assert _warnings(caplog, "quick") == []
    assert not [c for c in pluginmanager.CALLS.copy().values() if c[0] == "quick"]


def test_the_watchdog_is_off_by_default():
    assert load_plugins(entry_points=False).watchdog == 0
    assert load_plugins(config={"hook_watchdog": 3}, entry_points=False).watchdog == 3.0


@pytest.mark.parametrize(("value", "problem"), [
    ("0", "must be > 0, got 0"),
    ("-1.5", "must be > 0, got -1.5"),
    ("inf", "expected a finite number, got inf"),
    ("nan", "expected a finite number, got nan"),
    ('"10s"', "expected a number, got a string ('10s')"),
])
def test_hook_watchdog_is_a_finite_positive_number(tmp_path: Path, value: str, problem: str):
    path = tmp_path / "taskloom.toml"
    path.write_text(f"[taskloom]\nhook_watchdog = {value}\n", encoding="utf-8")
    assert validate_config(path, imports=False) == [f"taskloom.hook_watchdog: {problem}"]


def test_hook_watchdog_from_a_file_reaches_the_engine(tmp_path: Path):
    path = tmp_path / "taskloom.toml"
    path.write_text("[taskloom]\nhook_watchdog = 2.5\n", encoding="utf-8")
    assert validate_config(path, imports=False) == []
    assert Engine(**load_config(path).engine_kwargs()).plugins.watchdog == 2.5
