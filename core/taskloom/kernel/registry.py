"""Named components that plugins register: queues, executors, triggers, policies, stores..."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taskloom.kernel.errors import PluginError, TaskloomError, UnknownComponentError

KINDS = ("queue", "executor", "trigger", "policy", "store", "exporter", "limiter", "scheduler")

_KIND_LABEL = {
    "queue": "queue strategy",
    "executor": "executor",
    "trigger": "trigger",
    "policy": "policy",
    "store": "store",
    "exporter": "exporter",
    "limiter": "limiter",
    "scheduler": "scheduler",
}


class Registry:
    """Component factories by kind and name, with the plugin that registered each."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, tuple[Callable[..., Any], str]]] = {k: {} for k in KINDS}
        self._sections: dict[str, tuple[dict[str, Any] | None, str]] = {}
        self._errors: dict[str, tuple[type[TaskloomError], str]] = {}
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
                f"{_KIND_LABEL[kind]} {name!r} registered twice: by plugin {have[1]!r} "
                f"and by plugin {self.current_plugin!r}"
            )
        self._items[kind][name] = (factory, self.current_plugin)

    def get(self, kind: str, name: str) -> Callable[..., Any]:
        try:
            return self._items[kind][name][0]
        except KeyError:
            raise UnknownComponentError(
                _KIND_LABEL.get(kind, kind), name, list(self._items.get(kind, {}))
            ) from None

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Instantiate a component; a bad option is an error naming the component."""
        factory = self.get(kind, name)
        try:
            return factory(**options)
        except TypeError as exc:
            raise PluginError(f"{_KIND_LABEL[kind]} {name!r}: {exc}") from exc

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
