"""Named components that plugins register: queues, executors, triggers, policies, stores..."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskloom.kernel.errors import PluginError, TaskloomError, UnknownComponentError
from taskloom.kernel.schema import Key, kinds_from_python

KINDS = ("queue", "executor", "trigger", "policy", "store", "exporter", "limiter", "scheduler",
         "stats", "history")

#: How errors name a component of a kind, where that is not the kind's own name.
_LABELS = {"queue": "queue strategy", "stats": "statistics", "history": "run history"}


@dataclass(frozen=True)
class TaskOption:
    """A task option a plugin declared: ``Task(..., name=value)`` and ``[tasks.x] name``."""

    name: str
    key: Key  # TOML kinds and the one-line documentation
    plugin: str
    validate: Callable[[Any, str], object] | None = None


class Registry:
    """Component factories by kind and name, with the plugin that registered each."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, tuple[Callable[..., Any], str]]] = {k: {} for k in KINDS}
        self._sections: dict[str, tuple[dict[str, Any] | None, str]] = {}
        self._errors: dict[str, tuple[type[TaskloomError], str]] = {}
        self._options: dict[str, TaskOption] = {}
        self.current_plugin = "<direct>"

    def add_config_section(self, name: str, keys: Mapping[str, Any] | None = None) -> None:
        """Declare the ``[taskloom.<name>]`` configuration section this plugin reads.

        ``keys`` maps each key to its type: a Python type (``str``, ``int``, ``bool``,
        ``dict``, ``(int, float)``) or a TOML kind name (``"number"``, ``"table"``). With
        ``None`` any keys are accepted and the plugin checks them in ``taskloom_configure``.
        A section nobody declared is a configuration error.
        """
        have = self._sections.get(name)
        if have is not None and have[1] != self.current_plugin:
            raise PluginError(
                f"config section [taskloom.{name}] declared twice: by plugin {have[1]!r} "
                f"and by plugin {self.current_plugin!r}"
            )
        self._sections[name] = (None if keys is None else dict(keys), self.current_plugin)

    def config_sections(self) -> dict[str, dict[str, Any] | None]:
        """Declared ``[taskloom.<name>]`` sections and their keys."""
        return {name: keys for name, (keys, _) in sorted(self._sections.items())}

    def add_task_option(
        self,
        name: str,
        kinds: Any,
        doc: str,
        validate: Callable[[Any, str], object] | None = None,
    ) -> None:
        """Declare a task option this plugin reads from ``task.options[name]``.

        ``kinds``: what a configuration file may give, as for :meth:`add_config_section`
        (``int``, ``(float, dict)``, ``"table"``...). ``doc``: one line for the configuration
        reference. ``validate(value, where)``, when given, raises
        :class:`~taskloom.ConfigError` for a bad value (``where`` is ``task 'x': name``); it
        runs when a task joins a run and when a configuration file is validated. A task
        carrying an option nobody declared is rejected naming the plugin it needs.
        """
        have = self._options.get(name)
        if have is not None and have.plugin != self.current_plugin:
            raise PluginError(f"task option {name!r} declared twice: by plugin {have.plugin!r} "
                              f"and by plugin {self.current_plugin!r}")
        key = kinds if isinstance(kinds, Key) else Key(kinds_from_python(kinds), doc)
        self._options[name] = TaskOption(name, key, self.current_plugin, validate)

    def task_options(self) -> dict[str, TaskOption]:
        """Declared task options, by name."""
        return dict(sorted(self._options.items()))

    def add_error(self, error: type[TaskloomError]) -> None:
        """Declare an error this plugin raises; ``from taskloom import <Name>`` finds it."""
        if not (isinstance(error, type) and issubclass(error, TaskloomError)):
            raise PluginError(f"plugin {self.current_plugin!r}: error {error!r} must be a "
                              "subclass of taskloom.TaskloomError")
        have = self._errors.get(error.__name__)
        if have is not None and have[0] is not error:
            raise PluginError(f"error {error.__name__} declared twice: by plugin {have[1]!r} "
                              f"and by plugin {self.current_plugin!r}")
        self._errors[error.__name__] = (error, self.current_plugin)

    def errors(self) -> dict[str, type[TaskloomError]]:
        """Errors plugins declared, by class name."""
        return {name: error for name, (error, _) in self._errors.items()}

    def add(self, kind: str, name: str, factory: Callable[..., Any]) -> None:
        if kind not in self._items:
            raise PluginError(
                f"plugin {self.current_plugin!r} registered unknown component kind {kind!r}; "
                f"kinds: {', '.join(KINDS)}"
            )
        have = self._items[kind].get(name)
        if have is not None and have[1] != self.current_plugin:
            raise PluginError(
                f"{_LABELS.get(kind, kind)} {name!r} registered twice: by plugin {have[1]!r} "
                f"and by plugin {self.current_plugin!r}"
            )
        self._items[kind][name] = (factory, self.current_plugin)

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        try:
            return self._items[kind][name][0]
        except KeyError:
            raise UnknownComponentError(
                _LABELS.get(kind, kind), name, list(self._items.get(kind, {}))
            ) from None

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Instantiate a component; a bad option is an error naming the component."""
        factory = self.get(kind, name)
        try:
            return factory(**options)
        except TypeError as exc:
            raise PluginError(f"{_LABELS.get(kind, kind)} {name!r}: {exc}") from exc

    def first(self, kind: str) -> Any:
        """The component of a kind the core needs one of (``stats``), whoever registered it."""
        if not self._items[kind]:
            raise TaskloomError(f"no loaded plugin registers a {_LABELS.get(kind, kind)} component "
                                f"(kind {kind!r}); is the plugin providing it disabled?")
        return self.create(kind, min(self._items[kind]))

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def owner(self, kind: str, name: str) -> str:
        return self._items[kind][name][1]

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for kind, items in self._items.items():
            for name, (_, owner) in items.items():
                if owner == plugin:
                    found.setdefault(kind, []).append(name)
        return found

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        kind, name = key
        return name in self._items.get(kind, {})
