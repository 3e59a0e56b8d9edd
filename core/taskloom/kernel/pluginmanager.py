"""Loading plugins: one pluggy manager per engine or TaskManager, never at import time."""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pluggy

from taskloom.kernel import hookspecs
from taskloom.kernel.errors import ConfigError, PluginError
from taskloom.kernel.registry import Registry
from taskloom.kernel.stash import Stash
from taskloom.kernel.task import CORE_OPTIONS, Task

log = logging.getLogger("taskloom.plugins")

ENTRY_POINT_GROUP = "taskloom"
hookimpl = pluggy.HookimplMarker("taskloom")


@dataclass(frozen=True)
class PluginInfo:
    """What ``taskloom plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    disabled: bool = False
    hooks: tuple[str, ...] = ()
    components: Mapping[str, list[str]] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _entry_points() -> tuple[PluginInfo, ...]:
    """The ``taskloom`` entry points, read once per process."""
    from importlib import metadata  # scanning distributions is slow: only when needed

    found: list[PluginInfo] = []
    seen: set[str] = set()
    # One parse of each distribution's METADATA, not two per entry point: an entry point
    # shares its distribution object with its siblings.
    about: dict[int, tuple[Any, str | None, str | None]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        if dist is not None and id(dist) not in about:  # holding dist keeps its id its own
            md = dist.metadata
            about[id(dist)] = (dist, md["Name"], md["Version"])
        _, name, version = about.get(id(dist), (None, None, None))
        found.append(PluginInfo(ep.name, ep.value, name, version))
    return tuple(sorted(found, key=lambda e: e.name))


_import_lock = threading.Lock()


def _load(value: str) -> Any:
    module_name, _, attr = value.partition(":")
    with _import_lock:
        obj: Any = importlib.import_module(module_name.strip())
    for part in filter(None, attr.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def disabled_from_env() -> set[str]:
    raw = os.environ.get("TASKLOOM_DISABLE_PLUGINS", "")
    return {p.strip() for p in raw.split(",") if p.strip()}


class HookFlags:
    """Which per-task hooks have implementations; the engine reads these on its hot path."""

    __slots__ = ("attempt_failed", "attempt_finish", "run_wrappers", "task_error",
                 "task_prepare", "task_wrappers", "transition")

    def __init__(self) -> None:
        self.transition = self.attempt_finish = self.task_error = False
        self.task_prepare = self.task_wrappers = self.attempt_failed = self.run_wrappers = False


#: The per-task hooks the engine calls through a :class:`FastHook`.
FAST_HOOKS = ("taskloom_task_wrappers", "taskloom_task_prepare", "taskloom_attempt_finish",
              "taskloom_task_transition", "taskloom_attempt_failed", "taskloom_run_wrappers")


class _Manager(pluggy.PluginManager):
    """pluggy's manager, counting the hook-call monitors in place (tracing included): while
    one is active, :class:`FastHook` goes through pluggy so every call is seen."""

    monitors = 0

    def add_hookcall_monitoring(self, before: Any, after: Any) -> Callable[[], None]:
        undo = super().add_hookcall_monitoring(before, after)
        self.monitors += 1
        done = False

        def undo_and_count() -> None:
            nonlocal done
            if not done:
                done = True
                self.monitors -= 1
                undo()

        return undo_and_count


def contain(exc: Exception, kind: hookspecs.Kind, plugin: str, hook: str) -> None:
    """The error boundary of a plugin's hook implementation, by the hook's kind: an observer's
    failure is logged and ignored; a policy's fails the task with a PluginError naming the
    plugin (configuration and plugin errors pass as they are); a setup hook's propagates."""
    if kind is hookspecs.Kind.OBSERVER:
        log.error("plugin %r raised in %s; ignored", plugin, hook, exc_info=exc)
        return
    if not kind.guarded or isinstance(exc, (PluginError, ConfigError)):
        raise exc
    raise PluginError(f"plugin {plugin!r} raised in {hook}: {type(exc).__name__}: {exc}") from exc


#: Watched hook calls in flight, by id: [plugin, hook, thread id, limit, the watchdog's mark].
CALLS: dict[int, list[Any]] = {}
_tick = [float("inf")]  # how often the watchdog looks: a quarter of the shortest limit
_shorter = threading.Event()  # a shorter limit arrived: the watchdog's wait ends at once


def _watchdog(limit: float) -> None:
    """Log each hook call in flight for longer than its limit, again whenever its time running
    doubles; a call is timed from when the watchdog first sees its current plugin in it."""
    with _import_lock:
        started, _tick[0] = _tick[0] < float("inf"), min(_tick[0], limit / 4)
    if started:  # the running watchdog takes the shorter tick now, not after its long wait
        _shorter.set()
    while not started:
        _shorter.wait(_tick[0])
        _shorter.clear()
        now = time.monotonic()
        for call in CALLS.copy().values():
            plugin, mark = call[0], call[4]  # mark: [plugin, first seen, next warning]
            if mark is None or mark[0] is not plugin:
                call[4] = [plugin, now, now + call[3]]
            elif now >= mark[2]:
                mark[2] = 2 * now - mark[1]
                names = {t.ident: t.name for t in threading.enumerate()}
                log.warning("plugin %r has been running %s for %.1fs in thread %r (hook_watchdog "
                            "is %gs)", plugin, call[1], now - mark[1], names.get(call[2]), call[3])


class FastHook:
    """Calls one per-task hook's implementations directly, in pluggy's order.

    pluggy's dispatch costs about a microsecond per call, most of a task's budget. While nobody
    traces or monitors hook calls (``TASKLOOM_TRACE_HOOKS``, the test kit's recorder), the
    implementations are called from a precomputed list, positionally in the spec's order,
    inside the same error boundary (:func:`contain`) and watchdog as the pluggy path;
    otherwise the call goes through pluggy so it is seen.
    """

    __slots__ = ("_argnames", "_caller", "_impls", "_kind", "_pm", "_ps", "name")

    def __init__(self, ps: PluginSet, name: str) -> None:
        self.name = name
        self._pm, self._ps = ps.pm, ps
        self._caller = caller = getattr(ps.hook, name)
        spec = caller.spec
        self._kind = hookspecs.kind_of(spec.function if spec is not None else None)
        self._argnames: tuple[str, ...] = tuple(spec.argnames) if spec is not None else ()
        self._impls: list[tuple[str, Callable[..., Any], tuple[int, ...] | None]] | None = []
        for impl in reversed(caller.get_hookimpls()):  # pluggy calls the last registered first
            if impl.wrapper or impl.hookwrapper:
                self._impls = None  # wrappers need pluggy's machinery
                break
            fn = getattr(impl.function, "taskloom_raw", impl.function)
            wanted = tuple(impl.argnames)
            picks = (None if wanted == self._argnames
                     else tuple(self._argnames.index(a) for a in wanted))
            self._impls.append((impl.plugin_name, fn, picks))

    def __call__(self, *args: Any) -> list[Any]:
        """Call with the hook's arguments, positionally in the spec's order."""
        impls = self._impls
        if impls is None or self._pm.monitors:
            kwargs = dict(zip(self._argnames, args, strict=True))
            return self._caller(**kwargs)  # type: ignore[no-any-return]
        results: list[Any] = []
        if not (limit := self._ps.watchdog):  # the common case, without the watchdog's marks
            for plugin, fn, picks in impls:
                try:
                    result = fn(*args) if picks is None else fn(*[args[i] for i in picks])
                except Exception as exc:
                    contain(exc, self._kind, plugin, self.name)
                    continue
                if result is not None:
                    results.append(result)
            return results
        call: list[Any] = [None, self.name, threading.get_ident(), limit, None]
        CALLS[key := id(call)] = call
        try:
            for plugin, fn, picks in impls:
                call[0] = plugin
                try:
                    result = fn(*args) if picks is None else fn(*[args[i] for i in picks])
                except Exception as exc:
                    contain(exc, self._kind, plugin, self.name)
                    continue
                if result is not None:
                    results.append(result)
        finally:
            del CALLS[key]
        return results


class PluginSet:
    """A pluggy manager with the taskloom hook specs, its plugins and their registry."""

    def __init__(self) -> None:
        self.pm = _Manager("taskloom")
        self.pm.add_hookspecs(hookspecs)
        self.hook = self.pm.hook
        self.registry = Registry()
        self.stash = Stash()  # plugins' typed state for this plugin set
        self.infos: dict[str, PluginInfo] = {}
        self.flags = HookFlags()
        self.fast: dict[str, FastHook] = {}
        self.config: Mapping[str, Any] = MappingProxyType({})
        self.watchdog = 0.0  # seconds: a hook call running longer is logged; 0: not watched
        self._plugins: dict[str, object] = {}
        self._registered_components = False
        self.hook.taskloom_addhooks.call_historic(kwargs={"pluginmanager": self.pm})
        self._refresh_flags()
        if os.environ.get("TASKLOOM_TRACE_HOOKS", "") not in ("", "0"):
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
            self.pm.enable_tracing()

    # -- registration ------------------------------------------------------------------------
    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a hook-implementing object (module, class instance) under ``name``."""
        name = name or self.pm.get_canonical_name(plugin)
        if self.pm.get_plugin(name) is not None or plugin in self._plugins.values():
            raise PluginError(f"plugin {name!r} is invalid: already registered")
        try:
            self.pm.register(self._guarded(plugin, name), name=name)
            if self._registered_components:  # early plugins are checked once all are loaded
                self.pm.check_pending()
        except Exception as exc:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
        self._plugins[name] = plugin
        self._refresh_flags()
        if self._registered_components:
            self._call_register(name)
        return name

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._plugins.pop(name, None)
        self._refresh_flags()

    def get_plugin(self, name: str) -> object | None:
        """The object registered as ``name`` (what was passed to :meth:`register`)."""
        return self._plugins.get(name)

    def _guarded(self, plugin: object, name: str) -> object:
        """What pluggy registers for ``plugin``: its hook implementations, each inside the
        error boundary of its hook's kind (looked up when it raises: a plugin may implement a
        hook whose spec another plugin adds later)."""
        hooks = SimpleNamespace()  # what pluggy registers instead of the plugin
        for attr in dir(plugin):
            opts = self.pm.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                continue
            fn = getattr(plugin, attr)
            if not (opts.get("wrapper") or opts.get("hookwrapper")):
                fn = _guard(self, fn, name, opts.get("specname") or attr)
                fn.taskloom_impl = opts  # type: ignore[attr-defined]
            setattr(hooks, attr, fn)
        return hooks

    def kind(self, hook: str) -> hookspecs.Kind:
        spec = getattr(self.hook, hook).spec
        return hookspecs.kind_of(spec.function if spec is not None else None)

    def check_hooks(self, strict: bool = False) -> None:
        """Every implemented hook has a spec (or is optional): a plugin implementing an unknown
        hook is dropped with a warning (an error with ``strict``)."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or "?"
                message = f"{exc} (a hook declared by a plugin that is disabled or missing?)"
                if strict:
                    raise PluginError(f"plugin {name!r} is invalid: {message}") from exc
                log.warning("plugin %r not loaded: %s", name, message)
                self.unregister(name)
                self.infos[name] = replace(self.infos.get(name, PluginInfo(name, name)),
                                           error=message)

    def check_task_options(self, task: Task) -> None:
        """Every option of ``task`` is declared by a loaded plugin, and valid by its check.

        An option that is not is a :class:`ConfigError` naming the plugin it needs when that
        plugin is installed but disabled or broken (a plugin's options share its entry-point
        name or are listed by it), else the closest declared names.
        """
        declared = self.registry.task_options()
        for key, value in task.options.items():
            if key in CORE_OPTIONS:
                continue
            option = declared.get(key)
            if option is None:
                raise ConfigError(f"task {task.name!r}: {self.missing_option(key)}")
            if option.validate is not None:
                option.validate(value, f"task {task.name!r}: {key}")

    def unavailable_option(self, key: str) -> str | None:
        """Why option ``key`` is missing when its plugin is installed but not loaded."""
        info = self.infos.get(key)
        if info is None or not (info.disabled or info.error):
            return None
        why = "which is disabled" if info.disabled else f"which failed to load ({info.error})"
        return f"option {key!r} needs plugin {key!r}, {why}"

    def missing_option(self, key: str) -> str:
        """Why option ``key`` is not available, for an error message."""
        unavailable = self.unavailable_option(key)
        if unavailable is not None:
            return unavailable
        off = sorted(n for n, i in self.infos.items() if i.disabled or i.error)
        close = difflib.get_close_matches(key, list(self.registry.task_options()), 1)
        return (f"unknown option {key!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + (f" (plugins not loaded: {', '.join(off)})" if off else ""))

    def _refresh_flags(self) -> None:
        for flag in HookFlags.__slots__:  # each a hook's name without its prefix
            name = "taskloom_task_transition" if flag == "transition" else f"taskloom_{flag}"
            setattr(self.flags, flag, bool(getattr(self.hook, name).get_hookimpls()))
        self.fast = {name: FastHook(self, name) for name in FAST_HOOKS}

    def load_entry_points(self, disable: Iterable[str] = (), strict: bool = False) -> None:
        """Load every ``taskloom`` entry point except the disabled ones.

        A plugin that fails to import or register is recorded (``self.infos[name].error``)
        and the rest load; with ``strict`` it is a :class:`PluginError` instead.
        """
        skip = set(disable) | disabled_from_env()
        for ep in _entry_points():
            if ep.name in skip:
                self.infos[ep.name] = replace(ep, disabled=True)
                continue
            try:
                self.register(_load(ep.module), name=ep.name)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                self.infos[ep.name] = replace(ep, error=message)
                if strict:
                    raise PluginError(f"plugin {ep.name!r} ({ep.module}) failed to load: "
                                      f"{message}") from exc
                log.warning("plugin %r (%s) failed to load: %s", ep.name, ep.module, message)
                continue
            self.infos[ep.name] = ep

    def register_components(self) -> None:
        """Call ``taskloom_register`` on every plugin, attributing each component."""
        for impl in reversed(self.hook.taskloom_register.get_hookimpls()):
            self._call_register_impl(impl)
        self._registered_components = True
        for name, info in list(self.infos.items()):
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
                self.infos[name] = replace(info, hooks=hooks,
                                           components=self.registry.by_plugin(name))

    def _call_register(self, plugin_name: str) -> None:
        for impl in self.hook.taskloom_register.get_hookimpls():
            if impl.plugin_name == plugin_name:
                self._call_register_impl(impl)

    def _call_register_impl(self, impl: Any) -> None:
        self.registry.current_plugin = impl.plugin_name
        try:
            impl.function(registry=self.registry)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in taskloom_register: "
                              f"{exc}") from exc
        finally:
            self.registry.current_plugin = "<direct>"

    def configure(self, config: Mapping[str, Any] | None = None) -> None:
        """Hand the ``[taskloom]`` table to every plugin (historic: late plugins get it too)."""
        self.config = MappingProxyType(dict(config or {}))
        limit = self.config.get("hook_watchdog")  # off by default: see docs/architecture.md
        self.watchdog = float(limit) if isinstance(limit, (int, float)) and 0 < limit < 1e9 else 0
        if self.watchdog and self.watchdog / 4 < _tick[0]:
            threading.Thread(target=_watchdog, args=(self.watchdog,), daemon=True).start()
        self.hook.taskloom_configure.call_historic(kwargs={"config": self.config})


def _guard(ps: PluginSet, fn: Callable[..., Any], plugin: str, hook: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if limit := ps.watchdog:
            call = [plugin, hook, threading.get_ident(), limit, None]
            CALLS[key := id(call)] = call
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            contain(exc, ps.kind(hook), plugin, hook)
            return None
        finally:
            if limit:
                del CALLS[key]

    guarded.taskloom_raw = fn  # type: ignore[attr-defined]
    return guarded


def load_plugins(
    *,
    config: Mapping[str, Any] | None = None,
    disable: Iterable[str] = (),
    strict: bool = False,
    plugins: Iterable[object] = (),
    entry_points: bool = True,
) -> PluginSet:
    """Build a plugin set: entry points (minus disabled), extra ``plugins``, then components.

    ``config`` is the ``[taskloom]`` table; its ``disable_plugins`` and ``strict`` keys are
    honoured here, then every plugin receives it through ``taskloom_configure``.
    """
    config = dict(config or {})
    disable = set(disable) | set(config.get("disable_plugins", ()))
    strict = strict or bool(config.get("strict", False))
    ps = PluginSet()
    if entry_points:
        ps.load_entry_points(disable=disable, strict=strict)
    for i, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{i}"
        ps.register(plugin, name=name)
        ps.infos[name] = PluginInfo(name, getattr(plugin, "__module__", name) or name)
    ps.check_hooks(strict)
    ps.register_components()
    ps.configure(config)
    return ps

