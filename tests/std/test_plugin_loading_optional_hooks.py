"""Plugins that implement a hook another plugin declares still load when that one is off."""

import pytest

from taskloom import load_plugins


@pytest.mark.parametrize("off", ["circuit_breaker", "scheduling"])
def test_observers_of_a_disabled_plugins_hooks_still_load(off):
    plugins = load_plugins(disable=[off])
    failed = {name: info.error for name, info in plugins.infos.items() if info.error}
    assert failed == {}
    assert {"logging", "otel"} <= set(plugins.infos)
    assert plugins.infos[off].disabled and plugins.get_plugin(off) is None
    declared = {"circuit_breaker": "taskloom_circuit_change",
                "scheduling": "taskloom_schedule_fire"}[off]
    assert not hasattr(plugins.hook, declared) or not getattr(plugins.hook, declared).spec


def test_the_scheduling_plugin_declares_the_schedule_hooks():
    plugins = load_plugins()
    for name in ("taskloom_schedule_fire", "taskloom_schedule_misfire",
                 "taskloom_schedule_overlap"):
        assert getattr(plugins.hook, name).spec.namespace.__module__ == (
            "taskloom_std.scheduling.hookspecs")
