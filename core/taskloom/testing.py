"""Test fixtures for plugin authors: a pytest plugin, opted into by name.

Installing taskloom adds nothing to other projects' pytest sessions; a test suite that wants
the fixtures names the plugin in its ``conftest.py``: ``pytest_plugins = ["taskloom.testing"]``::

    def test_my_plugin(taskloom_engine, register_plugin, hook_recorder):
        register_plugin(my_plugin)
        summary = taskloom_engine.run([Task("a", fn=lambda: 1)])
        assert summary.ok
        hook_recorder.assert_called("taskloom_run_finish", times=1)

Fixtures:

* ``taskloom_plugins``: an isolated :class:`~taskloom.PluginSet` built with
  :func:`taskloom.load_plugins` (a pluggy manager of its own, nothing shared with other tests).
* ``taskloom_engine`` / ``taskloom_manager``: an :class:`~taskloom.Engine` /
  :class:`~taskloom.TaskManager` on that plugin set and on ``fake_clock``; open runs are
  cancelled and closed after the test.
* ``fake_clock``: a :class:`~taskloom.FakeClock`; time moves only with ``advance()``.
* ``hook_recorder``: every hook call on the plugin set, with its arguments and result.
* ``register_plugin``: register a plugin for the duration of the test.

Tune them with the ``taskloom`` marker::

    @pytest.mark.taskloom(entry_points=False, config={"webhook": {...}}, plugins=[mine],
                          only=["queues", "executors"], engine={"max_workers": 2})

This module is only imported by pytest; ``import taskloom`` never imports it.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
import pytest

from taskloom.api.fakeclock import FakeClock
from taskloom.api.manager import TaskManager
from taskloom.kernel.engine import Engine, Run
from taskloom.kernel.pluginmanager import ENTRY_POINT_GROUP, PluginSet, load_plugins

__all__ = [
    "HookCall",
    "HookRecorder",
    "PluginRegistrar",
    "fake_clock",
    "hook_recorder",
    "register_plugin",
    "taskloom_engine",
    "taskloom_manager",
    "taskloom_plugins",
]

MARKER = "taskloom"
#: Plugins this module registers itself are named with this prefix and left out of reports.
_INTERNAL = "taskloom-testing-"
# The same marker as ``taskloom.hookimpl``, declared here so the probe stays typed.
_hookimpl = pluggy.HookimplMarker("taskloom")
_MARKER_KEYS = frozenset({"entry_points", "only", "disable", "config", "plugins", "engine"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(entry_points=True, only=None, disable=(), config=None, plugins=(), "
        "engine=None): options for the taskloom fixtures (plugin set, engine)",
    )


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``taskloom`` marker's keywords; the closest marker (function over module) wins."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        unknown = set(marker.kwargs) - _MARKER_KEYS
        if unknown or marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keywords {', '.join(sorted(_MARKER_KEYS))}; "
                f"got {', '.join(sorted(unknown)) or repr(marker.args)}"
            )
        options.update(marker.kwargs)
    return options


# -- hook recording ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HookCall:
    """One hook call: its name, keyword arguments, and what it returned or raised.

    Hook arguments read as attributes too: ``call.task``, ``call.error``. ``plugins`` names
    the plugins that implemented the hook at the time, in call order.
    """

    name: str
    kwargs: Mapping[str, Any]
    result: Any = None
    exception: BaseException | None = None
    plugins: tuple[str, ...] = field(default=())

    def __getattr__(self, item: str) -> Any:
        # ``call.task`` reads the hook argument ``task``.
        if item.startswith("_"):
            raise AttributeError(item)
        try:
            return self.kwargs[item]
        except KeyError:
            raise AttributeError(item) from None


class _Probe:
    """Implements every hook and does nothing, so the engine calls each hook at least once.

    The engine skips per-task hooks nobody implements; a recorder that wants to see them
    must give them an implementation. Results are ``None``: no behaviour changes.
    """

    @_hookimpl(trylast=True)
    def taskloom_task_prepare(self, task: Any, run: Any) -> None:
        return None

    @_hookimpl(trylast=True)
    def taskloom_task_wrappers(self, task: Any, run: Any) -> None:
        return None

    @_hookimpl(trylast=True)
    def taskloom_run_wrappers(self, run: Any) -> None:
        return None

    @_hookimpl(trylast=True)
    def taskloom_task_error(self, task: Any, error: BaseException, attempt: Any,
                            run: Any) -> None:
        return None

    @_hookimpl(trylast=True)
    def taskloom_task_transition(self, task: Any, old: Any, new: Any, run: Any) -> None:
        return None

    @_hookimpl(trylast=True)
    def taskloom_attempt_finish(self, task: Any, attempt: Any, error: BaseException | None,
                                run: Any) -> None:
        return None


class HookRecorder:
    """Records every hook call on a plugin set through pluggy's call monitoring.

    With ``probe`` (the default) a do-nothing plugin implementing the per-task hooks is
    registered too, because the engine does not call hooks that nobody implements.
    ``taskloom_register`` is called plugin by plugin, not through the hook caller, so it is
    not recorded; ``taskloom_configure`` is recorded when a plugin registered later receives
    the historic replay, and when ``plugins.configure()`` runs again.
    """

    PROBE_NAME = _INTERNAL + "probe"

    def __init__(self, plugins: PluginSet, *, probe: bool = True) -> None:
        self.plugins = plugins
        self._calls: list[HookCall] = []
        self._lock = threading.Lock()
        self._undo: Callable[[], None] | None = plugins.pm.add_hookcall_monitoring(
            self._before, self._after
        )
        self._probe = probe
        if probe:
            plugins.register(_Probe(), name=self.PROBE_NAME)

    def _before(self, hook_name: str, impls: Sequence[pluggy.HookImpl],
                kwargs: Mapping[str, Any]) -> None:
        return None

    def _after(self, outcome: pluggy.Result[Any], hook_name: str,
               impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        call = HookCall(
            name=hook_name,
            kwargs=dict(kwargs),
            result=outcome.get_result() if outcome.exception is None else None,
            exception=outcome.exception,
            # pluggy lists implementations in registration order and calls them last first.
            plugins=tuple(i.plugin_name for i in reversed(impls)
                          if not i.plugin_name.startswith(_INTERNAL)),
        )
        with self._lock:
            self._calls.append(call)

    def close(self) -> None:
        """Stop recording and remove the probe."""
        if self._undo is not None:
            self._undo()
            self._undo = None
        if self._probe and self.plugins.pm.get_plugin(self.PROBE_NAME) is not None:
            self.plugins.unregister(self.PROBE_NAME)

    # -- reading --------------------------------------------------------------------------------
    def _check_name(self, name: str | None) -> None:
        """A hook of the core or one a plugin of this set declared, else ValueError."""
        caller = getattr(self.plugins.hook, name, None) if name is not None else None
        if name is not None and (caller is None or not caller.has_spec()):
            raise ValueError(f"{name!r} is not a taskloom hook")

    def calls(self, name: str | None = None, **match: Any) -> list[HookCall]:
        """Recorded calls in order; of one hook with ``name``; ``match`` filters on arguments.

        A ``match`` value is compared with ``==``; for ``task`` a string matches the task name.
        """
        self._check_name(name)
        with self._lock:
            found = list(self._calls)
        if name is not None:
            found = [c for c in found if c.name == name]
        for key, want in match.items():
            found = [c for c in found if _matches(c.kwargs.get(key), want)]
        return found

    def names(self) -> list[str]:
        """The names of the recorded calls, in call order (with repeats)."""
        with self._lock:
            return [c.name for c in self._calls]

    def getcall(self, name: str, **match: Any) -> HookCall:
        """The single call of ``name`` matching ``match``; fails unless there is exactly one."""
        found = self.calls(name, **match)
        if len(found) != 1:
            raise AssertionError(
                f"expected exactly one call of {name}{_fmt(match)}, got {len(found)}"
            )
        return found[0]

    def transitions(self, task: str | None = None) -> list[tuple[str, str, str]]:
        """``(task name, old state, new state)`` of every recorded transition, in order."""
        out = []
        for c in self.calls("taskloom_task_transition"):
            name = c.kwargs["task"].name
            if task is None or name == task:
                out.append((name, _state(c.kwargs["old"]), _state(c.kwargs["new"])))
        return out

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    # -- asserting ------------------------------------------------------------------------------
    def assert_called(self, name: str, times: int | None = None, **match: Any) -> list[HookCall]:
        """Fail unless ``name`` was called (``times`` times, when given) with ``match``."""
        found = self.calls(name, **match)
        if times is None and not found:
            raise AssertionError(f"{name}{_fmt(match)} was not called; called: "
                                 f"{sorted(set(self.names()))}")
        if times is not None and len(found) != times:
            raise AssertionError(
                f"{name}{_fmt(match)} was called {len(found)} times, expected {times}"
            )
        return found

    def assert_not_called(self, name: str, **match: Any) -> None:
        found = self.calls(name, **match)
        if found:
            raise AssertionError(f"{name}{_fmt(match)} was called {len(found)} times")

    def assert_order(self, *names: str) -> None:
        """Fail unless the hooks were called in this order (other calls may come between)."""
        for n in names:
            self._check_name(n)
        it = iter(self.names())
        for n in names:
            if not any(seen == n for seen in it):
                raise AssertionError(f"hooks not called in order {list(names)}: "
                                     f"{self.names()}")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until another thread or process makes ``predicate()`` true; fail after
    ``timeout`` seconds. For work done elsewhere, never for time to pass (use
    ``fake_clock.advance`` for that)."""
    import time

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        pause.wait(0.002)


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, str) and not isinstance(value, str):
        if isinstance(value, enum.Enum):  # a TaskState compared with its string value
            return bool(value.value == want)
        if hasattr(value, "name"):  # a task (or job) compared with its name
            return bool(value.name == want)
    return bool(value == want)


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


def _fmt(match: Mapping[str, Any]) -> str:
    if not match:
        return ""
    return "(" + ", ".join(f"{k}={v!r}" for k, v in match.items()) + ")"


# -- temporary registration -------------------------------------------------------------------
class PluginRegistrar:
    """Registers plugins and unregisters them all in :meth:`undo` (run after the test)."""

    def __init__(self, default: Callable[[], PluginSet]) -> None:
        self._default = default
        self._done: list[tuple[PluginSet, str]] = []

    def __call__(self, plugin: object, name: str | None = None,
                 plugins: PluginSet | None = None) -> str:
        """Register ``plugin`` (a module or object with hook implementations); its name."""
        target = plugins if plugins is not None else self._default()
        registered: str = target.register(plugin, name=name)
        self._done.append((target, registered))
        return registered

    def undo(self) -> None:
        while self._done:
            target, name = self._done.pop()
            if target.pm.get_plugin(name) is not None:
                target.unregister(name)


# -- engine runs closed after the test ------------------------------------------------------
class _RunTracker:
    """Remembers the runs started on one plugin set so the fixture can close them."""

    def __init__(self) -> None:
        self.runs: list[Run] = []

    @_hookimpl
    def taskloom_run_start(self, run: Run) -> None:
        self.runs.append(run)

    def close(self) -> None:
        """Cancel and close every run that is still open."""
        for run in self.runs:
            if run.status in ("running", "idle"):
                run.cancel()
                run.close()


def _entry_point_names() -> list[str]:
    return sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def fake_clock() -> FakeClock:
    """A :class:`~taskloom.FakeClock`: ``advance(seconds)`` moves time and fires due timers."""
    return FakeClock()


@pytest.fixture
def taskloom_plugins(request: pytest.FixtureRequest) -> PluginSet:
    """An isolated plugin set, built with :func:`taskloom.load_plugins`.

    Marker keywords: ``entry_points`` (False: none at all), ``only`` (load just these entry
    points), ``disable``, ``config`` (the ``[taskloom]`` table), ``plugins`` (registered too).
    """
    opts = _marker_options(request)
    disable = set(opts.get("disable", ()))
    only: Iterable[str] | None = opts.get("only")
    if only is not None:
        disable |= set(_entry_point_names()) - set(only)
    return load_plugins(
        config=opts.get("config"),
        disable=disable,
        plugins=opts.get("plugins", ()),
        entry_points=bool(opts.get("entry_points", True)),
    )


@pytest.fixture
def hook_recorder(taskloom_plugins: PluginSet) -> Iterator[HookRecorder]:
    """Records every hook call on ``taskloom_plugins`` (see :class:`HookRecorder`)."""
    recorder = HookRecorder(taskloom_plugins)
    yield recorder
    recorder.close()


@pytest.fixture
def register_plugin(request: pytest.FixtureRequest) -> Iterator[PluginRegistrar]:
    """``register_plugin(plugin, name=None, plugins=None)``: registered until the test ends.

    Without ``plugins`` the plugin goes into ``taskloom_plugins``.
    """
    registrar = PluginRegistrar(lambda: request.getfixturevalue("taskloom_plugins"))
    yield registrar
    registrar.undo()


@pytest.fixture
def taskloom_engine(request: pytest.FixtureRequest, taskloom_plugins: PluginSet,
                    fake_clock: FakeClock) -> Iterator[Engine]:
    """An engine on ``taskloom_plugins`` and ``fake_clock`` (marker keyword ``engine``:
    options such as ``max_workers`` or ``queue``). Runs started on it and still open after
    the test are cancelled and closed.

    Timers (retry delays, timeouts) wait for ``fake_clock.advance()``.
    """
    options = dict(_marker_options(request).get("engine") or {})
    tracker = _RunTracker()
    taskloom_plugins.register(tracker, name=_INTERNAL + "runs")
    yield Engine(plugins=taskloom_plugins, clock=fake_clock, **options)
    tracker.close()
    if taskloom_plugins.pm.get_plugin(_INTERNAL + "runs") is not None:
        taskloom_plugins.unregister(_INTERNAL + "runs")


@pytest.fixture
def taskloom_manager(taskloom_engine: Engine) -> Iterator[TaskManager]:
    """A :class:`~taskloom.TaskManager` on ``taskloom_engine``; shut down after the test."""
    manager = TaskManager(engine=taskloom_engine)
    yield manager
    for run in manager.runs:
        if run.status in ("running", "pending"):
            run.cancel()
    manager.shutdown()
