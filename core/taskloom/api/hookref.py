"""The hook reference: every hook spec of a plugin set with its kind and where it is
declared (``taskloom plugins``, the generated hook reference, the tests that every hook is
documented and exercised)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from taskloom.kernel import hookspecs
from taskloom.kernel.pluginmanager import PluginSet


@dataclass(frozen=True)
class HookSpecInfo:
    """One hook spec of a plugin set: the core's, or one a plugin added."""

    name: str
    function: Callable[..., Any]
    kind: hookspecs.Kind
    firstresult: bool
    historic: bool
    declared_in: str  # the module (or class) holding the spec

    @property
    def argnames(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.function).parameters)


def hook_specs(plugins: PluginSet) -> list[HookSpecInfo]:
    """Every hook spec, the core's first (in their module's order), then plugins'."""
    found = []
    for caller in vars(plugins.hook).values():
        spec = getattr(caller, "spec", None)
        if not isinstance(caller, pluggy.HookCaller) or spec is None:
            continue
        ns = spec.namespace
        where = getattr(ns, "__qualname__", None) and f"{ns.__module__}.{ns.__qualname__}"
        found.append(HookSpecInfo(
            caller.name, spec.function, hookspecs.kind_of(spec.function),
            bool(spec.opts.get("firstresult")), bool(spec.opts.get("historic")),
            where or ns.__name__,
        ))
    core = hookspecs.__name__
    return sorted(found, key=lambda s: (s.declared_in != core, s.declared_in,
                                        s.function.__code__.co_firstlineno))
