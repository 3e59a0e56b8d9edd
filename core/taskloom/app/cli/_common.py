"""What the commands share: the configuration options, loading it, building the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from taskloom.api.history import HistoryProvider
from taskloom.app.config import Config, load_config
from taskloom.kernel.errors import ConfigError, PluginError, TaskloomError, UnknownComponentError
from taskloom.kernel.pluginmanager import PluginSet

F = TypeVar("F", bound=Callable[..., Any])

#: Exit statuses of every command.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def config_options(fn: F) -> F:
    """``FILE`` (optional: found in the working directory), ``--config`` and ``--set``."""
    fn = click.option(
        "--set", "sets", multiple=True, metavar="KEY=VALUE",
        help="Override a configuration key, TOML-typed (taskloom.queue=fifo, "
             "tasks.load.retry.max_retries=5). Repeatable.",
    )(fn)
    fn = click.option(
        "-c", "--config", "config_file", type=click.Path(dir_okay=False),
        help="Configuration file (same as FILE).",
    )(fn)
    fn = click.argument("file", required=False, type=click.Path(dir_okay=False))(fn)
    return fn


def param_option(fn: F) -> F:
    """``--param NAME=VALUE`` (repeatable)."""
    return click.option(
        "--param", "param_items", multiple=True, metavar="NAME=VALUE",
        help="A run parameter declared in [params] (typed as declared: "
             "--param date=2026-12-01). Repeatable.")(fn)


def fail(problems: Sequence[str], source: str | None = None) -> NoReturn:
    """Print every problem (``FILE: key.path: message``) and exit with status 2."""
    prefix = f"{source}: " if source else ""
    for problem in problems:
        click.echo(f"{prefix}{problem}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


def config_path(file: str | None, config_file: str | None) -> Path | None:
    if file and config_file and Path(file) != Path(config_file):
        fail([f"two configuration files given: {file} and {config_file}"])
    chosen = file or config_file
    if chosen is not None and not Path(chosen).is_file():
        fail([f"no such file: {chosen}"])
    return Path(chosen) if chosen is not None else None


def load(file: str | None, config_file: str | None, sets: Sequence[str]) -> Config:
    """The validated configuration, or exit 2 listing every problem."""
    path = config_path(file, config_file)
    try:
        config = load_config(path, overrides=list(sets))
    except ConfigError as exc:
        fail(exc.problems, exc.source)
    section = config.settings.get("logging")
    if isinstance(section, dict) and section.get("level") and section.get("enabled", True):
        show_logs(str(section["level"]), explicit=False)
    return config


_LOG_HANDLER_NAME = "taskloom-cli"


def show_logs(level: str, *, explicit: bool = True) -> None:
    """Print taskloom's log records at ``level`` and above on stderr.

    ``--log-level`` (``explicit``) wins over ``[taskloom.logging] level``: a level from the
    configuration is applied only when the command line gave none.
    """
    import logging

    logger = logging.getLogger("taskloom")
    handler = next((h for h in logger.handlers if h.get_name() == _LOG_HANDLER_NAME), None)
    if handler is not None and not explicit:
        return
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        fail([f"log level {level!r}: one of DEBUG, INFO, WARNING, ERROR, CRITICAL"])
    if handler is None:
        handler = logging.StreamHandler()
        handler.set_name(_LOG_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    handler.setLevel(number)
    logger.setLevel(number)


def history_provider(plugins: PluginSet, db: str | None = None,
                     store: str | None = None) -> HistoryProvider | None:
    """The ``history`` component of a plugin set, when a plugin registers one.

    With several: the one whose ``accepts(db)`` is true for a ``--db`` value, else the one
    whose store is the configured ``store``, else the first that has no ``accepts`` (a
    provider with it is only ever chosen by its location or its store).
    """
    registry = plugins.registry
    providers: list[HistoryProvider] = [registry.create("history", n)
                                        for n in registry.names("history")]
    if db is not None:
        for provider in providers:
            accepts = getattr(provider, "accepts", None)
            if callable(accepts) and accepts(db):
                return provider
    if store is not None:
        for provider in providers:
            if provider.store == store:
                return provider
    default = [p for p in providers if not callable(getattr(p, "accepts", None))]
    return default[0] if default else None


def build_engine(config: Config, store: str | None = None, clock: Any = None,
                 history_at: str | None = None) -> Any:
    """The engine the configuration describes.

    The CLI records runs: ``store`` (or the configured store) defaults to the store of the
    ``history`` component when a plugin registers one (the standard one: a database beside
    the configuration file), which also gives that store's options their defaults.
    ``history_at``: record into the history at that location (``taskloom resume``), with
    the history's store whatever the configuration says.
    """
    from taskloom.kernel.engine import Engine
    from taskloom.kernel.pluginmanager import load_plugins

    kwargs = config.engine_kwargs()
    kwargs.pop("store", None)
    kwargs.pop("store_options", None)
    try:
        plugins = load_plugins(config=_cli_settings(config.settings))
        name = store or config.settings.get("store")
        history = history_provider(plugins, db=history_at, store=name)
        if history is not None and (name is None or history_at is not None):
            name = history.store
        if name is not None and name != "none":
            options = dict(config.settings.get("store_options", {}))
            if history is not None and name == history.store:
                options = history.record_options(options, config.base_dir, config.path,
                                                 history_at)
            kwargs["store"] = name
            kwargs["store_options"] = options
        kwargs.pop("config", None)
        return Engine(plugins=plugins, clock=clock, **kwargs)
    except (ConfigError, PluginError, UnknownComponentError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        fail(problems, str(config.path) if config.path else None)
    except TaskloomError as exc:
        fail([str(exc)], str(config.path) if config.path else None)
    except Exception as exc:  # a plugin's component failed to build (a missing dependency...)
        fail([f"cannot build the engine: {type(exc).__name__}: {exc}"],
             str(config.path) if config.path else None)


def _cli_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The CLI keeps each attempt's output (``[taskloom.capture]``) unless told not to, and
    prints it itself when the task ends (no echo), so lines never interleave."""
    out = dict(settings)
    capture = out.get("capture")
    if capture is None or isinstance(capture, Mapping):
        capture = dict(capture or {})
        capture.setdefault("enabled", True)
        capture.setdefault("echo", False)
        out["capture"] = capture
    return out


def start_exporters(engine: Any, config: Config) -> list[Any]:
    """Set up every exporter component; each decides from its ``[taskloom.<name>]`` section and
    the standard environment (``OTEL_TRACES_EXPORTER=console`` works with no section at all).

    An exporter component is a factory called with ``config=`` (the ``[taskloom]`` table)
    that returns a handle with ``flush()`` and ``shutdown()``; the CLI shuts it down when the
    command ends.
    """
    import inspect

    handles = []
    registry = engine.plugins.registry
    for name in registry.names("exporter"):
        try:
            params = inspect.signature(registry.get("exporter", name)).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "config" not in params:
            continue  # an in-process component of that kind, not one the CLI sets up
        try:
            handles.append(registry.create("exporter", name, config=config.settings))
        except Exception as exc:  # a broken exporter must not look like a crash
            fail([f"taskloom.{name}: {exc}"], str(config.path) if config.path else None)
    return handles


def stop_exporters(handles: Sequence[Any]) -> None:
    """Shut each exporter down (which exports what it holds, within its own time bound); a
    handle without ``shutdown`` is flushed."""
    for handle in handles:
        fn = getattr(handle, "shutdown", None) or getattr(handle, "flush", None)
        if callable(fn):
            fn()
