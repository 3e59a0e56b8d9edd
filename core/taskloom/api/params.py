"""Run parameters: declared with a type (``[params]`` in TOML), given per run, recorded.

A declaration is a table ``{type = "date", default = "today", description = "..."}`` or a
plain value (its type is the value's: ``retries = 3`` is an ``int`` defaulting to 3). Types:
``str``, ``int``, ``float``, ``bool``, ``date``, ``datetime`` and ``list``. A ``date``
default may be ``"today"`` and a ``datetime`` default ``"now"``: both are read when the run
starts and recorded, so a resume sees the same value. A parameter without a default must be
given (``taskloom run --param name=value``, ``Engine.run(tasks, params={...})``).

Bodies read them as ``context.params``, ``when`` predicates too, and ``call`` arguments
reference them as ``args = { day = "{params.date}" }`` (:func:`bind_args`).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskloom.kernel.errors import ConfigError

TYPES = ("str", "int", "float", "bool", "date", "datetime", "list")
#: Keys of a ``[params]`` entry written as a table.
PARAM_KEYS = ("type", "default", "description")

_REQUIRED: Any = object()
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_REF = re.compile(r"\{params\.([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass(frozen=True)
class Param:
    """One declared parameter. ``default`` is :data:`REQUIRED` when it must be given."""

    name: str
    type: str = "str"
    default: Any = _REQUIRED
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


REQUIRED = _REQUIRED


def type_of(value: Any) -> str | None:
    """The parameter type of a Python value (None when it has none)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, (list, tuple)):
        return "list"
    return None


def declare(table: Any) -> tuple[dict[str, Param], list[str]]:
    """The ``[params]`` table as declarations, and a problem (``params.x: ...``) for each
    entry that is wrong."""
    params: dict[str, Param] = {}
    problems: list[str] = []
    if not isinstance(table, Mapping):
        return params, [f"params: expected a table of parameters, got {table!r}"]
    for name, spec in table.items():
        where = f"params.{name}"
        if isinstance(spec, Mapping):
            unknown = [k for k in spec if k not in PARAM_KEYS]
            for key in unknown:
                problems.append(f"{where}.{key}: unknown key; a parameter takes "
                                f"{', '.join(PARAM_KEYS)}")
            kind = spec.get("type", "str")
            if kind not in TYPES:
                problems.append(f"{where}.type: must be one of {', '.join(TYPES)}, got {kind!r}")
                continue
            description = spec.get("description", "")
            if not isinstance(description, str):
                problems.append(f"{where}.description: expected a string, got {description!r}")
                description = ""
            param = Param(name, kind, spec.get("default", _REQUIRED), description)
            if not param.required:
                try:
                    convert(param, param.default, check_only=True)
                except ValueError as exc:
                    problems.append(f"{where}.default: {exc}")
                    continue
            params[name] = param
            continue
        kind = type_of(spec)
        if kind is None:
            problems.append(f"{where}: expected a table {{type = ..., default = ...}} or a "
                            f"value, got {spec!r}")
            continue
        params[name] = Param(name, kind, spec)
    return params, problems


def convert(param: Param, value: Any, *, now: dt.datetime | None = None,
            check_only: bool = False) -> Any:
    """``value`` (a Python value or the text given on the command line) as ``param``'s
    type; ``ValueError`` saying what was expected. ``"today"``/``"now"`` read ``now``
    (default: the current time) unless ``check_only``."""
    kind = param.type
    text = value.strip() if isinstance(value, str) else None
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None and re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        raise ValueError(f"expected an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if kind == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if text == "today":
            return value if check_only else (now or dt.datetime.now()).date()
        if text is not None:
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                pass
        raise ValueError(f'expected a date (YYYY-MM-DD or "today"), got {value!r}')
    if kind == "datetime":
        if isinstance(value, dt.datetime):
            return value
        if text == "now":
            return value if check_only else (now or dt.datetime.now(dt.timezone.utc))
        if text is not None:
            try:
                return dt.datetime.fromisoformat(text)
            except ValueError:
                pass
        raise ValueError(f'expected a date and time (ISO 8601 or "now"), got {value!r}')
    # list: an array, or its TOML/JSON text on the command line
    if isinstance(value, (list, tuple)):
        return list(value)
    if text is not None and text.startswith("["):
        import json

        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if isinstance(found, list):
            return found
    raise ValueError(f'expected a list (JSON: ["a", "b"]), got {value!r}')


def resolve(params: Mapping[str, Param], given: Mapping[str, Any], *,
            now: dt.datetime | None = None, source: str | None = None) -> dict[str, Any]:
    """The run's parameter values: each given one converted, the others their defaults.

    :class:`ConfigError` lists every problem, each naming its parameter: an unknown name, a
    value of the wrong type, a required parameter not given.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in params:
            import difflib

            close = difflib.get_close_matches(name, list(params), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(params) or "none are declared ([params] in the file)"
            problems.append(f"--param {name}: unknown parameter (parameters: {known}){hint}")
    for name, param in params.items():
        if name in given:
            value, what = given[name], f"--param {name}"
        elif not param.required:
            value, what = param.default, f"params.{name}.default"
        else:
            problems.append(f"parameter {name!r} ({param.type}) is required: give it with "
                            f"--param {name}=VALUE")
            continue
        try:
            values[name] = convert(param, value, now=now)
        except ValueError as exc:
            problems.append(f"{what}: parameter {name!r}: {exc}")
    if problems:
        raise ConfigError(problems, source=source)
    return values


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``name=value`` items (``--param``) as a mapping; :class:`ConfigError` for a bad one."""
    out: dict[str, str] = {}
    problems = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            problems.append(f"--param {item!r}: expected name=value")
            continue
        out[name.strip()] = value
    if problems:
        raise ConfigError(problems)
    return out


def recorded(values: Mapping[str, Any]) -> dict[str, Any]:
    """What a run records of its parameters, as configuration overrides (dotted key: JSON
    value): a resume applies them again, so it runs with the same values (``today``
    included)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = type_of(value)
        if kind is None:
            continue  # not a parameter type: a Python caller's object, not recordable
        if kind in ("date", "datetime"):
            value = value.isoformat()
        elif kind == "list":
            value = list(value)
        out[f"params.{name}"] = {"type": kind, "default": value}
    return out


def from_recorded(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter values :func:`recorded` wrote, typed again (other keys are ignored)."""
    values: dict[str, Any] = {}
    for key, spec in overrides.items():
        if not key.startswith("params.") or not isinstance(spec, Mapping):
            continue
        name = key[len("params."):]
        try:
            values[name] = convert(Param(name, str(spec.get("type")), spec.get("default")),
                                   spec.get("default"))
        except ValueError:
            continue
    return values


def references(args: Mapping[str, Any]) -> list[str]:
    """The parameter names ``args`` values reference (``"{params.NAME}"``)."""
    return [m.group(1) for v in args.values() if isinstance(v, str)
            for m in _REF.finditer(v)]


def substitute(value: Any, params: Mapping[str, Any]) -> Any:
    """``value`` with ``{params.NAME}`` references replaced: a string that is only a
    reference becomes the parameter's value (typed), one with other text the text with the
    value formatted in."""
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value)
    if whole:
        return params[whole.group(1)]
    return _REF.sub(lambda m: str(params[m.group(1)]), value)


def bind_args(fn: Callable[..., Any], args: Mapping[str, Any]) -> Callable[..., Any]:
    """``fn`` with keyword arguments ``args`` given at each call, ``{params.NAME}``
    references read from the run's parameters. The returned body's signature is ``fn``'s
    without those arguments plus ``context``, so dependencies are still passed by name."""
    target = inspect.signature(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in target.parameters.values())
    unknown = [n for n in args if n not in target.parameters and not takes_any]
    if unknown:
        raise TypeError(f"args: {', '.join(map(repr, unknown))}: the call takes no such "
                        "parameter")
    wants_context = "context" in target.parameters
    kept = [p for n, p in target.parameters.items() if n not in args and n != "context"]
    context = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY)
    signature = target.replace(parameters=[
        *[p for p in kept if p.kind is not p.VAR_KEYWORD], context,
        *[p for p in kept if p.kind is p.VAR_KEYWORD]])

    def values(context: Any) -> dict[str, Any]:
        bound = {k: substitute(v, context.params) for k, v in args.items()}
        if wants_context:
            bound["context"] = context
        return bound

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def body_async(*a: Any, context: Any, **kw: Any) -> Any:
            return await fn(*a, **kw, **values(context))

        return _NoCodeAsync(body_async, signature)

    @functools.wraps(fn)
    def body(*a: Any, context: Any, **kw: Any) -> Any:
        return fn(*a, **kw, **values(context))

    return _NoCodeSync(body, signature)


class _Bound:
    """A callable whose parameters are read from its signature (the engine reads a plain
    function's from its code object, which a wrapper's would misreport)."""

    def __init__(self, fn: Callable[..., Any], signature: inspect.Signature) -> None:
        self._fn = fn
        self.__signature__ = signature
        self.__name__ = getattr(fn, "__name__", "body")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = getattr(fn, "__doc__", None)



class _NoCodeSync(_Bound):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


class _NoCodeAsync(_Bound):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._fn(*args, **kwargs)
