"""Pins every hook's name and argument names: the plugin API must not change by accident.

Adding a hook or an argument means adding it to the table here, in the same change (see
docs/hook-policy.md). Removing or renaming one fails this test: that needs the deprecation
path instead.
"""

import inspect

import pytest

from taskloom import load_plugins
from taskloom.kernel import hookspecs

#: hook name -> argument names, in order. Frozen: edit only together with hookspecs.py.
HOOKS = {
    "taskloom_register": ("registry",),
    "taskloom_configure": ("config",),
    "taskloom_run_start": ("run",),
    "taskloom_run_finish": ("run", "summary"),
    "taskloom_task_prepare": ("task", "run"),
    "taskloom_task_wrappers": ("task", "run"),
    "taskloom_task_error": ("task", "error", "attempt", "run"),
    "taskloom_task_transition": ("task", "old", "new", "run"),
    "taskloom_attempt_finish": ("task", "attempt", "error", "run"),
    "taskloom_attempt_output": ("task", "attempt", "text", "run"),
    "taskloom_task_overrun": ("task", "attempt", "run"),
    "taskloom_schedule_fire": ("job", "scheduled_for", "fired_at"),
    "taskloom_schedule_misfire": ("job", "scheduled_for", "fired_at"),
    "taskloom_schedule_overlap": ("job", "scheduled_for", "fired_at", "running"),
    "taskloom_circuit_change": ("key", "old", "new", "task"),
}

#: Calling conventions are part of the contract too (docs/hook-policy.md).
FIRSTRESULT = {"taskloom_task_error"}
HISTORIC = {"taskloom_configure"}


def _specs():
    return {
        name: fn for name, fn in vars(hookspecs).items()
        if name.startswith("taskloom_") and getattr(fn, "taskloom_spec", None) is not None
    }


def test_the_set_of_hooks_is_pinned():
    assert sorted(_specs()) == sorted(HOOKS), (
        "hooks were added or removed: update HOOKS (additions) or follow the deprecation "
        "path in docs/hook-policy.md (removals)"
    )


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_argument_names_are_pinned(name):
    fn = _specs()[name]
    assert tuple(inspect.signature(fn).parameters) == HOOKS[name]
    # The plugin manager sees the same names (what an implementation may ask for).
    caller = getattr(load_plugins(entry_points=False).hook, name)
    assert tuple(caller.spec.argnames) == HOOKS[name]


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_calling_conventions_are_pinned(name):
    opts = _specs()[name].taskloom_spec
    assert bool(opts.get("firstresult")) == (name in FIRSTRESULT)
    assert bool(opts.get("historic")) == (name in HISTORIC)


def test_kinds_cover_every_hook_once():
    observers, policies = hookspecs.OBSERVER_HOOKS, hookspecs.POLICY_HOOKS
    assert not observers & policies
    assert (observers | policies) <= set(HOOKS)
    assert set(HOOKS) - observers - policies == {"taskloom_register", "taskloom_configure"}
