"""Loading and validating taskloom configuration (TOML).

Where it comes from, later sources winning:

1. the file: ``taskloom.toml``, or the ``[tool.taskloom]`` table of ``pyproject.toml``
   (found in the working directory or its parents), or an explicit path;
2. the environment: ``TASKLOOM_<KEY>`` sets ``[taskloom] <key>``, a double underscore goes
   one table down (``TASKLOOM_QUEUE=fifo``, ``TASKLOOM_EXECUTOR__MAX_WORKERS=4``,
   ``TASKLOOM_OTEL__EXPORTER=console``). Values are read as TOML values (``4`` is an integer,
   ``true`` a boolean, ``["a", "b"]`` an array) and as plain strings otherwise. A single-level
   name that is not an engine key is ignored (other programs' variables), as are
   ``TASKLOOM_DISABLE_PLUGINS``, ``TASKLOOM_TRACE_HOOKS`` and ``TASKLOOM_CONFIG`` (a path to the
   configuration file), which have their own meaning;
3. ``--set key=value`` overrides: dotted keys from the file's root, as written in
   ``taskloom.toml`` (``taskloom.queue=fifo``, ``tasks.load.retry.max_retries=5``).

Validation reports every problem at once, each with its key path.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.api.history import parse_age
from taskloom.api.mapping import MappedTask, parse_map
from taskloom.api.params import Param, bind_args, declare, references, resolve
from taskloom.app.keys import (
    ENGINE_KEYS,
    EXECUTOR_TABLE_KEYS,
    INTERVAL_UNITS,
    RETENTION_KEYS,
    ROOT_KEYS,
    SCHEDULE_KEYS,
    TASK_KEYS,
)
from taskloom.kernel.errors import ConfigError, PluginError, TaskloomError, UnknownComponentError
from taskloom.kernel.schema import Key, accepts, describe, kind_of, kinds_from_python
from taskloom.kernel.task import Task

if TYPE_CHECKING:
    from taskloom.kernel.pluginmanager import PluginSet

FILE_NAME = "taskloom.toml"
ENV_PREFIX = "TASKLOOM_"
#: Environment variables with a meaning of their own, never read as configuration keys.
RESERVED_ENV = frozenset({"TASKLOOM_DISABLE_PLUGINS", "TASKLOOM_TRACE_HOOKS", "TASKLOOM_CONFIG"})

KeyPath = tuple[str | int, ...]

#: The longest interval, jitter or grace time a schedule takes, in seconds (100 years): the
#: scheduler adds it to dates, which end in the year 9999.
MAX_SECONDS = 100 * 366 * 86400
#: Task options that policy plugins check (each stops at its first problem).
_TASK_OPTIONS = ("retry", "timeout", "cache", "circuit_breaker")
_UNIT_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def _toml() -> Any:
    """The TOML parser, imported on first use so ``import taskloom`` stays cheap."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    return tomllib

_REF = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


# -- finding and reading ------------------------------------------------------------------------
def find_config(start: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None) -> Path | None:
    """``taskloom.toml``, or a ``pyproject.toml`` with ``[tool.taskloom]``, in ``start`` or
    its parents (``TASKLOOM_CONFIG`` names the file directly)."""
    named = (os.environ if env is None else env).get("TASKLOOM_CONFIG")
    if named:
        return Path(named)
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    return None


def _has_tool_table(path: Path) -> bool:
    try:
        data = _toml().loads(path.read_text(encoding="utf-8"))
    except (OSError, _toml().TOMLDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data.get("tool"), dict) and "taskloom" in data["tool"]


def _is_pyproject(path: Path | None) -> bool:
    return path is not None and path.name == "pyproject.toml"


def _read(path: Path) -> dict[str, Any]:
    """The file's configuration, normalised to ``{"taskloom": ..., "tasks": ..., ...}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the configuration: {exc.strerror or exc}"],
                          source=str(path)) from exc
    try:
        data: dict[str, Any] = _toml().loads(text)
    except _toml().TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML: {exc}{_caret(text, str(exc))}"],
                          source=str(path)) from exc
    if not _is_pyproject(path):
        return data
    tool = data.get("tool", {})
    table = tool.get("taskloom") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(["no [tool.taskloom] table"], source=str(path))
    root: dict[str, Any] = {"taskloom": {}}
    for key, value in table.items():
        if key in ("tasks", "schedules"):
            root[key] = value
        else:
            root["taskloom"][key] = value
    return root


def _caret(text: str, message: str) -> str:
    """The line a TOML error names, with a caret under its column (empty when none is named)."""
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where is None:
        return ""
    number, column = int(where[1]), int(where[2])
    lines = text.splitlines()
    if not 1 <= number <= len(lines):
        return ""
    line = lines[number - 1]
    pad = "".join(c if c == "\t" else " " for c in line[: column - 1])
    gutter = " " * len(str(number))
    return f"\n  {number} | {line}\n  {gutter} | {pad}^"


def parse_value(text: str) -> Any:
    """A TOML value (``4``, ``true``, ``[1, 2]``, ``{a = 1}``, ``"x"``), else the text itself."""
    try:
        return _toml().loads(f"v = {text}")["v"]
    except _toml().TOMLDecodeError:
        return text


def env_overrides(env: Mapping[str, str] | None = None) -> list[tuple[KeyPath, Any, str]]:
    """``(path, value, origin)`` for each ``TASKLOOM_*`` variable that names a key."""
    env = os.environ if env is None else env
    found: list[tuple[KeyPath, Any, str]] = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts) or (len(parts) == 1 and parts[0] not in ENGINE_KEYS):
            continue
        found.append((("taskloom", *parts), parse_value(env[name]), f"environment {name}"))
    return found


def parse_set(items: Iterable[str] | Mapping[str, Any]) -> list[tuple[KeyPath, Any, str]]:
    """``--set key=value`` items (or a mapping of dotted keys to values) as overrides."""
    out: list[tuple[KeyPath, Any, str]] = []
    if isinstance(items, Mapping):
        for key, value in items.items():
            out.append((_split_key(key), value, f"override {key}"))
        return out
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([f"--set {item!r}: expected key=value"])
        out.append((_split_key(key.strip()), parse_value(text.strip()), f"--set {item}"))
    return out


def _split_key(key: str) -> KeyPath:
    """A dotted key, TOML style: ``tasks."my.task".retry`` has three parts. An array index
    is a number part: ``schedules.0.cron``, or ``schedules[0].cron`` as problems print it."""
    if '"' not in key and "'" not in key:
        key = re.sub(r"\[(\d+)\]", r".\1", key)
    try:
        parsed = _toml().loads(f"{key} = 0")
    except _toml().TOMLDecodeError:
        raise ConfigError([f"--set: {key!r} is not a valid dotted key"]) from None
    parts: list[str | int] = []
    node: Any = parsed
    while isinstance(node, dict) and len(node) == 1:
        name = next(iter(node))
        parts.append(int(name) if name.isdigit() else name)
        node = node[name]
    return tuple(parts)


def _apply(root: dict[str, Any], path: KeyPath, value: Any, origin: str) -> str | None:
    """Set ``path`` to ``value`` in ``root``; a message when it cannot be set."""
    node: Any = root
    for i, part in enumerate(path[:-1]):
        nxt_part = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                return f"{origin}: {format_path(path[: i + 1])} does not exist"
            node = node[part]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = [] if isinstance(nxt_part, int) else {}
        elif isinstance(child, str) and part == "executor" and path[:1] == ("taskloom",):
            # executor = "thread" plus a sub-key becomes executor = {kind = "thread", ...}
            child = node[part] = {"kind": child}
        elif not isinstance(child, (dict, list)):
            return (f"{origin}: cannot set {format_path(path)}: {format_path(path[: i + 1])} "
                    f"is {describe((kind_of(child),))}")
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            return f"{origin}: {format_path(path)} does not exist"
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        node[last] = value
    return None


# -- key paths ------------------------------------------------------------------------------------
def format_path(path: KeyPath, pyproject: bool = False) -> str:
    """``("tasks", "load", "depends_on", 0)`` -> ``tasks.load.depends_on[0]``."""
    parts = list(path)
    if pyproject and parts:
        parts = ["tool", "taskloom", *parts[1:]] if parts[0] == "taskloom" else [
            "tool", "taskloom", *parts]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            # json quoting is a valid TOML basic string, once DEL is escaped as well
            text = p if _BARE.fullmatch(p) else json.dumps(p, ensure_ascii=False).replace(
                "\x7f", "\\u007f")
            out += f".{text}" if out else text
    return out


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


# -- the configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """One ``[[schedules]]`` entry, validated.

    ``trigger`` is ``cron``, ``interval``, ``date`` (from ``at``) or a plugin's trigger type;
    ``options`` are that trigger's options (``expression``, ``seconds``, ``run_date``,
    ``timezone``... or the entry's ``options`` table).
    """

    task: str
    trigger: str
    options: dict[str, Any]
    id: str
    timezone: str | None = None
    misfire_grace_time: float | None = None
    coalesce: bool | None = None
    max_instances: int | None = None
    max_active_runs: int | None = None
    jitter: float | None = None
    reuse_upstream: bool = False
    cron: str | None = None
    interval: float | None = None
    at: _dt.datetime | None = None


@dataclass
class Config:
    """A loaded, validated configuration.

    ``raw``: the merged tables (file, environment, overrides) as ``{"taskloom": {...},
    "tasks": {...}, "schedules": [...]}``. ``path``: the file, or ``None`` when there was none.
    ``overrides``: what the ``TASKLOOM_*`` environment and ``--set`` changed, as dotted key:
    value (a run records them, and a resume applies them again: :func:`load_config` takes
    this mapping as ``overrides``).
    """

    path: Path | None
    raw: dict[str, Any]
    schedules: list[Schedule] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        """The ``[taskloom]`` table (engine settings and plugin sections)."""
        table: dict[str, Any] = self.raw.get("taskloom", {})
        return table

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """The ``[tasks.NAME]`` tables, by name."""
        table: dict[str, dict[str, Any]] = self.raw.get("tasks", {})
        return table

    @property
    def params(self) -> dict[str, Param]:
        """The ``[params]`` declarations, by name."""
        return declare(self.raw.get("params", {}))[0]

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The run's parameter values: ``given`` (``--param``) typed, defaults for the rest;
        :class:`ConfigError` naming each parameter at fault."""
        return resolve(self.params, given, source=self._source())

    @property
    def base_dir(self) -> Path:
        """Where ``call`` modules and relative paths are looked up: the file's folder."""
        return self.path.resolve().parent if self.path is not None else Path.cwd()

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`taskloom.Engine`."""
        t = self.settings
        kwargs: dict[str, Any] = {"config": t}
        if "queue" in t:
            kwargs["queue"] = t["queue"]
        executor = t.get("executor")
        if isinstance(executor, str):
            kwargs["executor"] = executor
        elif isinstance(executor, dict):
            kwargs["executor"] = executor["kind"]
            kwargs["executor_options"] = {k: v for k, v in executor.items() if k != "kind"}
        for key in ("max_workers", "executors", "limits", "rate_limits"):
            if key in t:
                kwargs[key] = t[key]
        if "store" in t:
            kwargs["store"] = t["store"]
            if "store_options" in t:
                kwargs["store_options"] = t["store_options"]
        return kwargs

    def build_tasks(self) -> list[Task]:
        """The ``[tasks.*]`` tables as tasks, their ``call`` imported now.

        The configuration file's folder is put on ``sys.path`` first, so ``call = "etl:run"``
        finds ``etl.py`` beside it. Every import failure is reported, naming its task.
        """
        problems: list[str] = []
        tasks: list[Task] = []
        pyproject = _is_pyproject(self.path)
        for name, spec in self.tasks.items():
            fn = None
            if "call" in spec:
                try:
                    fn = self.resolve(spec["call"])
                except Exception as exc:
                    problems.append(
                        f"{format_path(('tasks', name, 'call'), pyproject)}: cannot import "
                        f"{spec['call']!r} for task {name!r}: {type(exc).__name__}: {exc}"
                    )
                    continue
            over = map_over(spec)
            if over in self.tasks and over not in spec.get("depends_on", ()):
                spec = {**spec, "depends_on": [*spec.get("depends_on", ()), over]}
            if "subflow" in spec:
                fn = self.subflow_body(name, spec["subflow"])
            try:
                if fn is not None and "args" in spec:
                    fn = bind_args(fn, spec["args"])
                tasks.append(_task(name, spec, fn))
            except (TypeError, ValueError) as exc:
                problems.append(f"{format_path(('tasks', name), pyproject)}: {exc}")
        if problems:
            raise ConfigError(problems, source=self._source())
        return tasks

    def conditions(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """``when`` predicates by task name, imported now."""
        found: dict[str, Callable[[dict[str, Any]], Any]] = {}
        problems: list[str] = []
        pyproject = _is_pyproject(self.path)
        for name, spec in self.tasks.items():
            if "when" not in spec:
                continue
            try:
                found[name] = self.resolve(spec["when"])
            except Exception as exc:
                problems.append(
                    f"{format_path(('tasks', name, 'when'), pyproject)}: cannot import "
                    f"{spec['when']!r} for task {name!r}: {type(exc).__name__}: {exc}"
                )
        if problems:
            raise ConfigError(problems, source=self._source())
        return found

    def subflow_body(self, name: str, value: Any) -> Callable[..., Any]:
        """The body of a ``subflow`` task: the file's workflow run as a child run."""
        from taskloom.api.subflows import SubflowBody

        file, params = subflow_spec(value)
        path = (self.base_dir / file).resolve()
        return SubflowBody(functools.partial(_child_workflow, path), params, name=path.stem)

    def resolve(self, ref: str) -> Callable[..., Any]:
        """Import ``"module:attr"`` (or ``"module.attr"``) with the file's folder on sys.path."""
        base = str(self.base_dir)
        if base not in sys.path:
            sys.path.insert(0, base)
        module_name, sep, attr = ref.partition(":")
        if not sep:
            module_name, _, attr = ref.rpartition(".")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise TypeError(f"{ref} is not callable")
        return obj  # type: ignore[no-any-return]

    def _source(self) -> str | None:
        return str(self.path) if self.path is not None else None


def subflow_spec(value: Any) -> tuple[str, dict[str, Any]]:
    """``(file, params)`` of a ``subflow`` value (a file name or ``{file, params}``)."""
    if isinstance(value, str):
        return value, {}
    return str(value.get("file")), dict(value.get("params") or {})


def _child_workflow(path: Path) -> Any:
    """A subflow's workflow, loaded from its file for each attempt."""
    from taskloom.api.subflows import Workflow

    config = load_config(path)
    return Workflow(config.build_tasks(), config.conditions(), config.resolve_params,
                    name=path.stem)


#: The keys of a waiting step, and what each is in the ``wait`` task option.
WAIT_KEYS = {"wait_for": "signal", "wait_timeout": "timeout", "payload_schema": "schema",
             "sleep": "sleep", "wait_until": "until"}


def wait_option(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``wait`` task option a task table's wait keys make (None: not a waiting step)."""
    found = {WAIT_KEYS[k]: v for k, v in spec.items() if k in WAIT_KEYS}
    return found or None


def map_over(spec: Mapping[str, Any]) -> str | None:
    """The task or parameter a task table maps over (None: not mapped)."""
    value = spec.get("map")
    if isinstance(value, Mapping):
        value = value.get("over")
    return value if isinstance(value, str) else None


def _task(name: str, spec: Mapping[str, Any], fn: Callable[..., Any] | None) -> Task:
    cls: Any = Task
    extra: dict[str, Any] = {}
    wait = wait_option(spec)
    options = spec.get("options")
    if wait is not None:
        options = {**(options or {}), "wait": wait}
        extra["executor"] = "wait"
    dependencies = spec.get("depends_on")
    if "map" in spec:
        cls, extra["map"] = MappedTask, parse_map(name, spec["map"])
    return cls(  # type: ignore[no-any-return]
        name,
        description=spec.get("description", ""),
        priority=spec.get("priority", 1),
        dependencies=dependencies,
        config=spec.get("config"),
        fn=fn,
        tags=spec.get("tags", ()),
        trigger_rule=spec.get("trigger_rule", "all_success"),
        deadline=spec.get("deadline"),
        options=options,
        # Every other key is an option a plugin declared (the validator checked which).
        **{k: v for k, v in spec.items() if k not in TASK_KEYS},
        **{"executor": spec.get("executor"), **extra},
    )


# -- validation ----------------------------------------------------------------------------------
class _Checker:
    """Walks the merged configuration against the schema and collects every problem."""

    def __init__(self, raw: dict[str, Any], plugins: PluginSet | None, pyproject: bool,
                 origins: dict[KeyPath, str]) -> None:
        self.raw = raw
        self.plugins = plugins
        self.task_keys: Mapping[str, Key] = TASK_KEYS  # with the plugins' task options
        self.pyproject = pyproject
        self.origins = origins
        self.problems: list[str] = []
        self.schedules: list[Schedule] = []
        self.base: Path | None = None  # the file, whose folder relative paths start from

    def add(self, path: KeyPath, message: str) -> None:
        origin = next((o for p, o in self.origins.items() if path[: len(p)] == p), None)
        suffix = f" (from {origin})" if origin else ""
        problem = f"{format_path(path, self.pyproject)}: {message}{suffix}"
        if problem not in self.problems:  # two checks of one value may agree on its fault
            self.problems.append(problem)

    # -- generic -------------------------------------------------------------------------------
    def unknown(self, path: KeyPath, known: Iterable[str], what: str = "unknown key") -> None:
        self.add(path, what + _did_you_mean(str(path[-1]), known))

    def component(self, path: KeyPath, kind: str, name: str) -> bool:
        if self.plugins is None:
            return True
        try:
            self.plugins.registry.get(kind, name)
        except UnknownComponentError as exc:
            self.add(path, str(exc) + _did_you_mean(name, exc.known))
            return False
        return True

    def value(self, path: KeyPath, key: Key, value: Any) -> bool:
        """Type, bounds, choices, array items, component name; False when wrong."""
        if not accepts(key.kinds, value):
            self.add(path, f"expected {describe(key.kinds)}, got {_show(value)}")
            return False
        kind = kind_of(value)
        if kind == "float" and "any" not in key.kinds and not math.isfinite(value):
            self.add(path, f"expected a finite number, got {value!r}")
            return False
        if kind in ("integer", "float") and (
            (key.minimum is not None and value < key.minimum)
            or (key.maximum is not None and value > key.maximum)
        ):
            lo = "" if key.minimum is None else f">= {key.minimum:g}"
            hi = "" if key.maximum is None else f"<= {key.maximum:g}"
            self.add(path, f"must be {' and '.join(filter(None, (lo, hi)))}, got {value!r}")
            return False
        if kind == "string" and key.choices and value not in key.choices:
            self.add(path, f"must be one of {', '.join(key.choices)}, got {value!r}"
                     + _did_you_mean(value, key.choices))
            return False
        if kind == "array" and key.items:
            ok = True
            for i, item in enumerate(value):
                if not accepts((key.items,), item):
                    self.add((*path, i), f"expected {describe((key.items,))}, got {_show(item)}")
                    ok = False
            return ok
        if kind == "string" and key.component:
            return self.component(path, key.component, value)
        return True

    def table(self, path: KeyPath, table: Any, keys: Mapping[str, Key],
              extra_ok: bool = False) -> dict[str, Any] | None:
        """Check a table's keys against ``keys``; returns the well-typed entries."""
        if not isinstance(table, dict):
            self.add(path, f"expected a table, got {_show(table)}")
            return None
        good: dict[str, Any] = {}
        for name, value in table.items():
            spec = keys.get(name)
            if spec is None:
                if not extra_ok:
                    self.unknown((*path, name), keys)
                continue
            if self.value((*path, name), spec, value):
                good[name] = value
        for name, spec in keys.items():
            if spec.required and name not in table:
                self.add((*path, name), "required key missing")
        return good

    # -- sections ------------------------------------------------------------------------------
    def root(self) -> None:
        for key in self.raw:
            if key not in ROOT_KEYS:
                self.unknown((key,), ROOT_KEYS, "unknown table")
        for problem in declare(self.raw.get("params", {}))[1]:
            where, _, message = problem.partition(": ")
            self.add(tuple(where.split(".")), message)

    def engine(self) -> None:
        table = self.raw.get("taskloom", {})
        if not isinstance(table, dict):
            self.add(("taskloom",), f"expected a table, got {_show(table)}")
            return
        sections = self.plugins.registry.config_sections() if self.plugins else {}
        engine_keys = {k: v for k, v in table.items() if k in ENGINE_KEYS}
        good = self.table(("taskloom",), engine_keys, ENGINE_KEYS)
        if good is None:
            return
        if good.get("hook_watchdog", 1) <= 0:
            self.add(("taskloom", "hook_watchdog"), f"must be > 0, got {good['hook_watchdog']!r}")
        self.executor(good)
        if "retention" in good:
            self.retention(good["retention"])
        for key in ("limits", "rate_limits"):
            if key in good:
                self.tag_limits(key, good)
        if "executors" in good:
            for name, opts in good["executors"].items():
                path: KeyPath = ("taskloom", "executors", name)
                if not isinstance(opts, dict):
                    self.add(path, f"expected a table of options, got {_show(opts)}")
                elif self.component(path, "executor", name):
                    self.try_executor(path, name, opts)
        if "disable_plugins" in good and self.plugins is not None:
            known = list(self.plugins.infos)
            for i, name in enumerate(good["disable_plugins"]):
                if isinstance(name, str) and name not in known:
                    self.add(("taskloom", "disable_plugins", i),
                             f"no plugin {name!r}" + _did_you_mean(name, known))
        for name, value in table.items():
            if name in ENGINE_KEYS:
                continue
            path = ("taskloom", name)
            if name in sections:
                self.plugin_section(path, value, sections[name])
            elif not isinstance(value, dict):
                self.unknown(path, [*ENGINE_KEYS, *sections])
            elif self.plugins is not None and name in self.plugins.infos:
                continue  # a disabled or broken plugin's section: its load error says why
            elif self.plugins is not None:
                self.unknown(path, [*ENGINE_KEYS, *sections],
                             "unknown plugin section: no loaded plugin declares it")

    def retention(self, table: dict[str, Any]) -> None:
        path: KeyPath = ("taskloom", "retention")
        good = self.table(path, table, RETENTION_KEYS)
        if good is not None and not table:
            self.add(path, 'give older_than, keep or both: {older_than = "30d", keep = 100}')
        if good and "older_than" in good:
            try:
                parse_age(good["older_than"])
            except ValueError as exc:
                self.add((*path, "older_than"), str(exc))

    def executor(self, good: dict[str, Any]) -> None:
        ex = good.get("executor")
        if not isinstance(ex, dict):
            return
        path: KeyPath = ("taskloom", "executor")
        checked = self.table(path, {k: v for k, v in ex.items() if k in EXECUTOR_TABLE_KEYS},
                             EXECUTOR_TABLE_KEYS)
        if checked is None or "kind" not in checked:
            return
        options = {k: v for k, v in ex.items() if k != "kind"}
        if self.component((*path, "kind"), "executor", checked["kind"]):
            self.try_executor(path, checked["kind"], options)

    def try_executor(self, path: KeyPath, name: str, options: dict[str, Any]) -> None:
        """Build the executor once, as the engine will: bad options are reported now."""
        if self.plugins is None:
            return
        try:
            self.plugins.registry.create("executor", name, **options).shutdown()
        except (PluginError, TypeError, ValueError, ConfigError) as exc:
            self.add(path, str(exc))
        except Exception as exc:  # the plugin itself is broken (a missing dependency...)
            self.add(path, f"executor {name!r} cannot be created: {type(exc).__name__}: {exc}")

    def tag_limits(self, key: str, good: dict[str, Any]) -> None:
        from taskloom.api.fakeclock import FakeClock

        if self.plugins is None or ("limiter", "tags") not in self.plugins.registry:
            return
        limits = good.get("limits", {}) if key == "limits" else {}
        rates = good.get("rate_limits", {}) if key == "rate_limits" else {}
        try:
            self.plugins.registry.create(
                "limiter", "tags", limits=limits, rate_limits=rates, clock=FakeClock()
            )
        except ConfigError as exc:
            for problem in exc.problems:
                where, _, message = problem.partition(": ")
                self.add(("taskloom", *where.split(".")), message)

    def plugin_section(self, path: KeyPath, value: Any, keys: Mapping[str, Any] | None) -> None:
        if not isinstance(value, dict):
            self.add(path, f"expected a table, got {_show(value)}")
            return
        if keys is None:
            return
        spec = {name: Key(kinds_from_python(t), "") for name, t in keys.items()}
        self.table(path, value, spec)

    def tasks(self) -> dict[str, dict[str, Any]]:
        tasks = self.raw.get("tasks", {})
        if not isinstance(tasks, dict):
            self.add(("tasks",), f"expected a table of tasks, got {_show(tasks)}")
            return {}
        names = list(tasks)
        good_tasks: dict[str, dict[str, Any]] = {}
        options = self.plugins.registry.task_options() if self.plugins else {}
        keys = self.task_keys = {**TASK_KEYS, **{name: o.key for name, o in options.items()}}
        for name, spec in tasks.items():
            path: KeyPath = ("tasks", name)
            if not name.strip():
                self.add(path, "a task name must not be empty")
            if isinstance(spec, dict) and self.plugins is not None:
                missing = {k: self.plugins.unavailable_option(k) for k in spec if k not in keys}
                for key, why in missing.items():
                    if why is not None:
                        self.add((*path, key), why)
                spec = {k: v for k, v in spec.items() if missing.get(k) is None}
            good = self.table(path, spec, keys)
            if good is None:
                continue
            good_tasks[name] = good
            wait = wait_option(good)
            if wait is not None:
                self.wait(name, wait, spec)
            elif "subflow" in good:
                self.subflow(name, good["subflow"])
            elif "call" not in spec:
                self.nothing_to_run(name, names)
            for key in ("call", "when"):
                ref = good.get(key)
                if ref is not None and (not _REF.fullmatch(ref)
                                        or (":" not in ref and "." not in ref)):
                    self.add((*path, key), f"expected 'module:function', got {ref!r}")
            declared = self.raw.get("params", {})
            if "map" in good:
                self.map_(name, good["map"], names, declared)
            for ref in references(good.get("args", {})):
                if not isinstance(declared, dict) or ref not in declared:
                    self.add((*path, "args"), f"references parameter {ref!r}, which [params] "
                             "does not declare")
            for i, dep in enumerate(good.get("depends_on", ())):
                if not isinstance(dep, str):
                    continue
                if dep == name:
                    self.add((*path, "depends_on", i), "a task cannot depend on itself")
                elif dep not in tasks:
                    self.add((*path, "depends_on", i),
                             f"unknown task {dep!r}" + _did_you_mean(dep, names))
        self.cycles(good_tasks)
        return good_tasks

    def wait(self, name: str, wait: dict[str, Any], spec: Mapping[str, Any]) -> None:
        from taskloom.api.signals import parse_wait

        path: KeyPath = ("tasks", name)
        for key in ("call", "subflow", "map", "executor"):
            if key in spec:
                self.add((*path, key), "a waiting step (wait_for, sleep, wait_until) has no "
                         f"{key}")
        try:
            parse_wait(wait, "wait")
        except ConfigError as exc:
            names = {v: k for k, v in WAIT_KEYS.items()}
            for problem in exc.problems:
                where, _, message = problem.partition(": ")
                parts = where.split(".")
                field = names.get(parts[1]) if len(parts) > 1 else None
                self.add((*path, field) if field else path,
                         message.replace("signal, sleep or until",
                                         "wait_for, sleep or wait_until"))

    def subflow(self, name: str, value: Any) -> None:
        path: KeyPath = ("tasks", name, "subflow")
        if isinstance(value, dict):
            for key in value:
                if key not in ("file", "params"):
                    self.unknown((*path, key), ("file", "params"))
            if not isinstance(value.get("file"), str):
                self.add((*path, "file"), "expected the workflow's file name")
                return
            if not isinstance(value.get("params", {}), dict):
                self.add((*path, "params"), "expected a table of parameters")
        if "call" in self.raw["tasks"][name]:
            self.add(path, "a task runs either a call or a subflow, not both")
        file, _ = subflow_spec(value)
        base = self.base.parent if self.base is not None else Path.cwd()
        if not (base / file).is_file():
            self.add(path, f"no such file: {file}")

    def map_(self, name: str, value: Any, names: list[str], declared: Any) -> None:
        path: KeyPath = ("tasks", name, "map")
        try:
            spec = parse_map(name, value)
        except ValueError as exc:
            message = str(exc).removeprefix(f"task {name!r}: ")
            where, _, rest = message.partition(": ")
            self.add((*path[:2], *where.split(".")), rest)
            return
        params = declared if isinstance(declared, dict) else {}
        if spec.over == name:
            self.add(path, "a task cannot map over itself")
        elif spec.over not in names and spec.over not in params:
            self.add(path, f"maps over {spec.over!r}, which is neither a task nor a parameter "
                     "in [params]" + _did_you_mean(spec.over, [*names, *params]))

    def bodies(self, tasks: Iterable[Task]) -> None:
        """Parameters of a body that nothing will fill (no dependency of that name, no
        default), found before a run fails on them."""
        from taskloom.kernel.engine import unfilled_parameters

        for task in tasks:
            for problem in unfilled_parameters(task):
                self.add(("tasks", task.name, "call"), problem)

    def nothing_to_run(self, name: str, names: list[str]) -> None:
        """A task table without ``call`` is a typo or a leftover, never a task to complete."""
        others = [n for n in names if n != name]
        made = [o for p, o in self.origins.items() if p[:2] == ("tasks", name)]
        spec = self.raw["tasks"][name]
        made_by = f" (the table was made by {made[0]})" if made and len(made) == len(spec) \
            and all(("tasks", name, k) in self.origins for k in spec) else ""
        self.add(("tasks", name), 'no call = "module:function": a task needs something to '
                 "run" + _did_you_mean(name, others) + made_by)

    def cycles(self, tasks: dict[str, dict[str, Any]]) -> None:
        from taskloom.api.graph import DependencyGraph

        graph = DependencyGraph()
        for name in tasks:
            graph.add_task(name)
        for name, spec in tasks.items():
            over = map_over(spec)
            for dep in [*spec.get("depends_on", ()), *([over] if over else [])]:
                if isinstance(dep, str) and dep in tasks and dep != name:
                    graph.add_dependency(dep, name)
        cycle = graph.find_cycle()
        if cycle is not None:
            self.add(("tasks", cycle[0], "depends_on"),
                     "dependency cycle: " + " -> ".join(cycle))

    def policies(self, tasks: dict[str, dict[str, Any]]) -> None:
        """Let each plugin check task options now: the checks their declarations carry, then
        ``taskloom_task_prepare``. Each is called on its own, so every complaint is reported.
        """
        ps = self.plugins
        if ps is None:
            return
        declared = ps.registry.task_options()
        for name, spec in tasks.items():
            for key, value in spec.items():
                option = declared.get(key)
                if option is None or option.validate is None:
                    continue
                try:
                    option.validate(value, f"task {name!r}: {key}")
                except ConfigError as exc:
                    for problem in exc.problems:
                        self.task_problem(name, problem)
        if not ps.flags.task_prepare:
            return
        impls = ps.hook.taskloom_task_prepare.get_hookimpls()
        try:  # a run that never starts, on the configured executors: plugins look at it
            from taskloom.kernel.engine import Engine

            kwargs = Config(None, self.raw).engine_kwargs()
            run: Any = Engine(plugins=ps, **{k: v for k, v in kwargs.items() if k in (
                "executor", "executor_options", "executors")}).open_run(name="validate")
        except Exception:  # the engine's settings are wrong, and reported already
            run = None
        for name, spec in tasks.items():
            try:
                task = _task(name, spec, None)
            except (TypeError, ValueError):
                continue
            if not task.options:
                continue
            for impl in impls:
                try:
                    _prepare(impl, task, run)
                except ConfigError as exc:
                    recheck = functools.partial(_prepare_with, impl, name, spec, run)
                    for problem in _every_problem(exc.problems, spec, _TASK_OPTIONS, recheck):
                        self.task_problem(name, problem)
                except Exception as exc:
                    if run is None:  # a plugin that needs a run checks when the run starts
                        continue
                    self.add(("tasks", name), f"plugin {impl.plugin_name!r} crashed while "
                             f"checking the task's options: {type(exc).__name__}: {exc}")

    def task_problem(self, name: str, problem: str) -> None:
        """A plugin's ``task 'x': retry.max_retries: ...`` as ``tasks.x.retry.max_retries``."""
        prefix = f"task {name!r}: "
        message = problem[len(prefix):] if problem.startswith(prefix) else problem
        for sep in (": ", " "):
            head, found, rest = message.partition(sep)
            keys = head.split(".")
            if found and keys[0] in self.task_keys and all(_BARE.fullmatch(k) for k in keys):
                self.add(("tasks", name, *keys), rest)
                return
        self.add(("tasks", name), message)

    def schedules_(self, tasks: Mapping[str, Any]) -> None:
        entries = self.raw.get("schedules", [])
        if not isinstance(entries, list):
            self.add(("schedules",), "expected an array of tables ([[schedules]])")
            return
        for i, entry in enumerate(entries):
            path: KeyPath = ("schedules", i)
            good = self.table(path, entry, SCHEDULE_KEYS)
            if good is None:
                continue
            before = len(self.problems)
            task = good.get("task")
            if isinstance(task, str) and task not in tasks:
                self.add((*path, "task"), f"unknown task {task!r}" + _did_you_mean(task, tasks))
            which = [k for k in ("cron", "interval", "at", "trigger") if k in entry]
            if len(which) != 1:
                self.add(path, "needs exactly one of cron, interval, at or trigger"
                         + (f"; got {', '.join(which)}" if which else ""))
            for key in ("jitter", "misfire_grace_time"):
                if key in good and good[key] > MAX_SECONDS:
                    self.add((*path, key), f"must be at most {MAX_SECONDS} seconds (100 years), "
                                           f"got {good[key]:g}")
                    good.pop(key)
            tz = good.get("timezone")
            if tz is not None and not self.time_zone((*path, "timezone"), tz):
                good.pop("timezone")  # the trigger is still checked, in UTC
            for key in ("ambiguous", "nonexistent"):
                if key in good and "cron" not in entry:
                    self.add((*path, key), "a DST policy for cron schedules only")
            seconds = self.interval((*path, "interval"), good.get("interval"))
            at = self.at((*path, "at"), good.get("at"))
            # A key of the wrong type was reported by table() and is not in ``good``.
            if len(which) != 1 or which[0] not in good or not isinstance(task, str) or (
                    which[0] in ("interval", "at") and (seconds or at) is None):
                continue
            schedule = _schedule(i, good, which[0], seconds, at)
            if self.check_trigger((*path, which[0]), schedule) and len(self.problems) == before:
                self.schedules.append(schedule)

    def time_zone(self, path: KeyPath, name: str) -> bool:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(name)
        # a folder of the zone database or a name too long for a file is an OSError
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            self.add(path, f"unknown time zone {_clip(name)}: expected an IANA name such as "
                           "'Europe/Berlin' or 'UTC'")
            return False
        return True

    def check_trigger(self, path: KeyPath, schedule: Schedule) -> bool:
        """Build the trigger as the scheduler will, so its own checks (cron fields, time
        zones, jitter) are reported now; without trigger plugins, cron is checked here.

        Whatever the trigger's factory raises is a reported problem naming the plugin that
        registered it, never a traceback."""
        registry = self.plugins.registry if self.plugins is not None else None
        if registry is None or schedule.trigger not in registry.names("trigger"):
            if schedule.cron is not None:
                return self.check_cron(path, schedule.cron)
            return True
        options = dict(schedule.options)
        if schedule.jitter is not None:
            options["jitter"] = schedule.jitter
        try:
            trigger = registry.create("trigger", schedule.trigger, **options)
        except (TaskloomError, ValueError, TypeError) as exc:
            self.add(path if schedule.trigger != "interval" or "jitter" not in str(exc)
                     else (*path[:-1], "jitter"), str(exc))
            return False
        except Exception as exc:
            owner = registry.owner("trigger", schedule.trigger)
            self.add(path, f"trigger {schedule.trigger!r} (plugin {owner!r}) failed on these "
                           f"options: {type(exc).__name__}: {exc}")
            return False
        try:
            _fire_times(trigger)
        except Exception as exc:
            owner = registry.owner("trigger", schedule.trigger)
            self.add(path, f"trigger {schedule.trigger!r} (plugin {owner!r}) cannot compute its "
                           f"fire times from these options: {type(exc).__name__}: {exc}")
            return False
        return True

    def check_cron(self, path: KeyPath, expression: str) -> bool:
        from cronsim import CronSim, CronSimError

        if expression.strip().lower() in _CRON_NICKNAMES:
            return True
        try:
            CronSim(expression, _dt.datetime(2000, 1, 1))
        except (CronSimError, ValueError, OverflowError) as exc:
            self.add(path, f"invalid cron expression {expression!r}: {exc}")
            return False
        return True

    def interval(self, path: KeyPath, value: Any) -> float | None:
        """Seconds from ``interval`` (a number, or a table of units): finite, more than 0
        and at most :data:`MAX_SECONDS`, so the scheduler's date arithmetic cannot overflow."""
        if value is None:
            return None
        if isinstance(value, dict):
            total, ok = 0.0, True
            for unit, n in value.items():
                if unit not in INTERVAL_UNITS:
                    self.unknown((*path, unit), INTERVAL_UNITS)
                    ok = False
                elif isinstance(n, bool) or not isinstance(n, (int, float)) or not (
                        math.isfinite(n) and n >= 0):
                    self.add((*path, unit), f"expected a finite number >= 0, got {_show(n)}")
                    ok = False
                else:
                    total += n * _UNIT_SECONDS[unit]
            if not ok:
                return None
            value = total
        if not math.isfinite(value) or value <= 0:
            self.add(path, f"must be more than 0 seconds, got {value:g}")
            return None
        if value > MAX_SECONDS:
            self.add(path, f"must be at most {MAX_SECONDS} seconds (100 years), got {value:g}")
            return None
        return float(value)

    def at(self, path: KeyPath, value: Any) -> _dt.datetime | None:
        if value is None:
            return None
        moment: _dt.datetime | None = None
        if isinstance(value, str):
            try:
                moment = _dt.datetime.fromisoformat(value)
            except ValueError:
                self.add(path, f"expected an ISO date-time, got {_clip(value)}")
                return None
        elif isinstance(value, _dt.datetime):
            moment = value
        elif isinstance(value, _dt.date):
            moment = _dt.datetime(value.year, value.month, value.day)
        else:
            self.add(path, f"expected a date-time, got {_show(value)}")
            return None
        # A time-zone offset or local time moves a moment by up to a day: years 1 and 9999
        # cannot always be converted to UTC.
        if not 1 < moment.year < 9999:
            self.add(path, f"must be between the years 2 and 9998, got {value}")
            return None
        return moment


def _fire_times(trigger: Any) -> None:
    """Ask a trigger what the scheduler will ask it: its first two fire times from now, each
    delayed by its whole jitter. Date arithmetic that overflows raises here, not in a
    running scheduler."""
    now = _dt.datetime.now(_dt.timezone.utc)
    first = getattr(trigger, "first_fire_time", None)
    when = first(now) if callable(first) else trigger.next_fire_time(now)
    jitter = getattr(trigger, "jitter", None) or 0.0
    for _ in range(2):
        if when is None:
            return
        _dt.datetime.fromtimestamp(when.timestamp() + float(jitter), _dt.timezone.utc)
        when = trigger.next_fire_time(when)


#: cron(8)'s nicknames the cron trigger accepts.
_CRON_NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                   "@hourly")


def _schedule(i: int, good: Mapping[str, Any], which: str, seconds: float | None,
              at: _dt.datetime | None) -> Schedule:
    tz = good.get("timezone")
    if which == "cron":
        trigger, options = "cron", {"expression": good["cron"], "timezone": tz,
                                    "ambiguous": good.get("ambiguous"),
                                    "nonexistent": good.get("nonexistent")}
    elif which == "interval":
        trigger, options = "interval", {"seconds": seconds}
    elif which == "at":
        trigger, options = "date", {"run_date": at, "timezone": tz}
    else:
        trigger, options = good["trigger"], dict(good.get("options", {}))
    options = {k: v for k, v in options.items() if v is not None}
    return Schedule(
        task=good["task"],
        trigger=trigger,
        options=options,
        id=good.get("id") or f"{good['task']}:{which}:{i}",
        timezone=tz,
        misfire_grace_time=good.get("misfire_grace_time"),
        coalesce=good.get("coalesce"),
        max_instances=good.get("max_instances"),
        max_active_runs=good.get("max_active_runs"),
        jitter=good.get("jitter"),
        reuse_upstream=bool(good.get("reuse_upstream", False)),
        cron=good.get("cron"),
        interval=seconds,
        at=at,
    )


def _clip(text: str, limit: int = 60) -> str:
    """``repr(text)``, shortened: a problem line stays readable whatever was written."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 5]}...' ({len(text)} characters)"


def _show(value: Any) -> str:
    kind = kind_of(value)
    if kind in ("table", "array"):
        return describe((kind,))
    return f"{describe((kind,))} ({value!r})"


def _plugins_for(table: Any, problems: _Checker) -> PluginSet | None:
    """Load the plugins the configuration selects, to check names against what they register."""
    from taskloom.kernel.pluginmanager import load_plugins

    settings = table if isinstance(table, dict) else {}
    disable = settings.get("disable_plugins", [])
    strict = settings.get("strict", False)
    clean = dict(settings)
    clean["disable_plugins"] = [d for d in disable if isinstance(d, str)] \
        if isinstance(disable, list) else []
    clean["strict"] = strict if isinstance(strict, bool) else False
    try:
        return load_plugins(config=clean)
    except PluginError as exc:
        problems.add(("taskloom", "strict"), str(exc))
        failure: Exception | None = None
    except Exception as exc:  # a plugin rejected (or choked on) its section: asked one by one
        failure = exc
    try:  # the names are still worth checking
        plugins = load_plugins(config={"disable_plugins": clean["disable_plugins"]})
    except Exception:
        plugins = None
    before = len(problems.problems)
    if failure is not None and plugins is not None:
        _configure_each(plugins, clean, problems)
    if failure is not None and len(problems.problems) == before:
        problems.add(("taskloom",), "the plugins cannot be loaded with this configuration: "
                                    f"{type(failure).__name__}: {failure}")
    return plugins


def _prepare(impl: Any, task: Task, run: Any) -> None:
    args = {"task": task, "run": run}
    impl.function(*[args[a] for a in impl.argnames])


def _prepare_with(impl: Any, name: str, spec: Mapping[str, Any], run: Any,
                  changed: dict[str, Any]) -> None:
    _prepare(impl, _task(name, {**spec, **changed}, None), run)


def _configure_with(impl: Any, settings: dict[str, Any], changed: dict[str, Any]) -> None:
    from types import MappingProxyType

    impl.function(config=MappingProxyType({**settings, **changed}))


def _every_problem(first: list[str], table: Mapping[str, Any], keys: Iterable[str],
                   check: Callable[[dict[str, Any]], None]) -> list[str]:
    """Every problem of the tables in ``table[keys]``, when a plugin stops at the first.

    ``check`` is called again with each table reduced to one of its keys (``{"retry":
    {"backoff": ...}}``); of what it raises, the problems that name that key are kept."""
    found = list(first)
    for key in keys:
        sub = table.get(key)
        if not isinstance(sub, dict) or len(sub) < 2:
            continue
        for item, value in sub.items():
            try:
                check({key: {item: value}})
            except ConfigError as exc:
                named = re.compile(rf"(?<![\w-]){re.escape(str(item))}(?![\w-])")
                found.extend(p for p in exc.problems if named.search(p) and p not in found)
            except Exception:  # only the whole table is this plugin's input
                continue
    return found


def _section_path(problem: str, sections: Iterable[str]) -> str:
    """A plugin's problem with the key path as the validator prints it:
    ``[taskloom.retry].backoff must ...`` as ``taskloom.retry.backoff: must ...``, and
    ``otel.exporter: ...`` as ``taskloom.otel.exporter: ...``."""
    problem = re.sub(r"^\[taskloom\.([\w-]+)\]\.([\w-]+) ", r"taskloom.\1.\2: ", problem)
    head = problem.split(":", 1)[0].split(".", 1)[0]
    return f"taskloom.{problem}" if head in sections else problem


def _configure_each(plugins: PluginSet, settings: dict[str, Any], problems: _Checker) -> None:
    """Give each plugin the ``[taskloom]`` table on its own, so every plugin's complaint is
    reported, and one that crashes is named instead of showing a traceback."""
    from types import MappingProxyType

    config = MappingProxyType(settings)
    sections = [k for k, v in settings.items() if isinstance(v, dict)]
    for impl in plugins.hook.taskloom_configure.get_hookimpls():
        try:
            impl.function(config=config)
        except ConfigError as exc:
            problems.problems.extend(_section_path(p, sections) for p in _every_problem(
                exc.problems, settings, sections,
                functools.partial(_configure_with, impl, settings),
            ))
        except Exception as exc:
            name = impl.plugin_name
            path: KeyPath = ("taskloom", name) if name in settings else ("taskloom",)
            problems.add(path, f"plugin {name!r} crashed while checking its configuration: "
                               f"{type(exc).__name__}: {exc}")


def _merge(path: Path | None, overrides: Iterable[str] | Mapping[str, Any],
           env: Mapping[str, str] | None,
           applied: dict[str, Any] | None = None,
           ) -> tuple[dict[str, Any], dict[KeyPath, str], list[str]]:
    raw: dict[str, Any] = _read(path) if path is not None else {}
    raw.setdefault("taskloom", {})
    origins: dict[KeyPath, str] = {}
    problems: list[str] = []
    for key_path, value, origin in (*env_overrides(env), *parse_set(overrides)):
        if not key_path:
            continue
        message = _apply(raw, key_path, value, origin)
        if message:
            problems.append(message)
        else:
            origins[key_path] = origin
            if applied is not None:
                applied[dotted_key(key_path)] = value
    return raw, origins, problems


def dotted_key(key_path: KeyPath) -> str:
    """A key path as a dotted key that ``--set`` (and :func:`parse_set`) reads back."""
    return ".".join(
        str(p) if isinstance(p, int) or re.fullmatch(r"[A-Za-z0-9_-]+", p) else json.dumps(p)
        for p in key_path
    )


def _check(path: Path | None, overrides: Iterable[str] | Mapping[str, Any],
           env: Mapping[str, str] | None, plugins: PluginSet | None,
           imports: bool) -> tuple[Config, list[str]]:
    applied: dict[str, Any] = {}
    raw, origins, problems = _merge(path, overrides, env, applied)
    checker = _Checker(raw, plugins, _is_pyproject(path), origins)
    checker.base = path.resolve() if path is not None else None
    checker.problems.extend(problems)
    if checker.plugins is None:
        checker.plugins = _plugins_for(raw.get("taskloom"), checker)
    checker.root()
    checker.engine()
    tasks = checker.tasks()
    checker.schedules_(raw.get("tasks", {}) if isinstance(raw.get("tasks"), dict) else {})
    checker.policies(tasks)
    config = Config(path, raw, checker.schedules, applied)
    if imports and not checker.problems:
        try:
            checker.bodies(config.build_tasks())
        except ConfigError as exc:
            checker.problems.extend(exc.problems)
        try:
            config.conditions()
        except ConfigError as exc:
            checker.problems.extend(exc.problems)
    return config, checker.problems


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    env: Mapping[str, str] | None = None,
    plugins: PluginSet | None = None,
) -> Config:
    """Load, merge and validate the configuration; :class:`ConfigError` lists every problem.

    ``path``: the file (``taskloom.toml`` or a ``pyproject.toml``); ``None`` looks for one
    (see :func:`find_config`) and uses the defaults when there is none. ``overrides``:
    ``["key=value", ...]`` as given to ``--set``, or a mapping of dotted keys to values.
    ``env``: the environment to read ``TASKLOOM_*`` from (default ``os.environ``).
    ``plugins``: the plugin set whose registered names are valid (default: the plugins the
    configuration selects).
    """
    file = Path(path) if path is not None else find_config(env=env)
    config, problems = _check(file, overrides, env, plugins, imports=False)
    if problems:
        raise ConfigError(problems, source=str(file) if file is not None else None)
    return config


def check_config(
    path: Path | None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    env: Mapping[str, str] | None = None,
    imports: bool = True,
) -> tuple[Config | None, list[str]]:
    """The configuration in ``path`` (``None``: the defaults) and every problem in it; the
    configuration is ``None`` when the file cannot be read or parsed."""
    try:
        return _check(path, overrides, env, None, imports=imports)
    except ConfigError as exc:
        return None, list(exc.problems)


def searched(start: str | os.PathLike[str] | None = None) -> str:
    """Where :func:`find_config` looks, in words, for a message that it found nothing."""
    here = Path(start or os.getcwd()).resolve()
    return (f"looked for {FILE_NAME}, or pyproject.toml with a [tool.taskloom] table, in {here} "
            "and every folder above it (TASKLOOM_CONFIG names a file directly)")


def validate_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    env: Mapping[str, str] | None = None,
    plugins: PluginSet | None = None,
    imports: bool = True,
) -> list[str]:
    """Every problem in the configuration (``key.path: message``); empty when it is valid.

    With ``imports`` (the default) the ``call`` and ``when`` references are imported too.
    """
    file = Path(path) if path is not None else find_config(env=env)
    try:
        _, problems = _check(file, overrides, env, plugins, imports=imports)
    except ConfigError as exc:
        return list(exc.problems)
    return problems
