"""Helpers shared by the policy plugins: exception types named in configuration."""

from __future__ import annotations

import builtins
import importlib
import math
from collections.abc import Iterable
from typing import Any

from taskloom import ConfigError


def resolve_exception_type(spec: Any, where: str) -> type[BaseException]:
    """An exception class from a class or a dotted name (``pkg.mod:Name``, ``builtins.X``).

    ``where`` prefixes the error (``task 'load': retry.retry_on``).
    """
    if isinstance(spec, type) and issubclass(spec, BaseException):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: expected an exception type or its dotted name, got {spec!r}")
    name = spec.strip()
    if ":" in name:
        module_name, _, attr = name.partition(":")
    elif "." in name:
        module_name, _, attr = name.rpartition(".")
    else:
        module_name, attr = "builtins", name
    try:
        obj: Any = builtins if module_name == "builtins" else importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {name!r} ({exc})") from None
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise ConfigError(f"{where}: {name!r} is not an exception type")
    return obj


def resolve_exception_types(spec: Any, where: str) -> tuple[type[BaseException], ...]:
    """One type or name, or a list of them, as a tuple of classes for ``isinstance``."""
    if spec is None:
        return ()
    items: Iterable[Any] = (
        spec if isinstance(spec, (list, tuple, set, frozenset)) else (spec,)
    )
    return tuple(resolve_exception_type(s, where) for s in items)


def number(value: Any, where: str, *, minimum: float = 0.0, allow_none: bool = False) -> Any:
    """``value`` if it is a finite real number >= ``minimum`` (bools, inf and nan refused),
    else ConfigError."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{where} must be a number >= {minimum:g}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number >= {minimum:g}, got {value!r}")
    return value


def integer(value: Any, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value
