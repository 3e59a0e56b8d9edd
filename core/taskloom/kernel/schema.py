"""How configuration keys are declared: :class:`Key` (TOML kinds, bounds, choices, a line
of documentation) and the kind checks. The core's own tables of keys are in
:mod:`taskloom.app.keys`; a plugin declares its ``[taskloom.<name>]`` section with
``registry.add_config_section(name, keys)`` and its task options with
``registry.add_task_option``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

#: TOML value kinds; ``number`` accepts integers and floats.
KINDS = ("string", "integer", "float", "number", "boolean", "array", "table", "datetime", "any")


@dataclass(frozen=True)
class Key:
    """One configuration key.

    ``kinds``: the TOML kinds accepted. ``doc``: one line for the reference.
    ``component``: the registry kind whose registered names a string value must be
    (``queue``, ``executor``, ``store``...). ``items``: the kind of an array's items.
    ``minimum``/``maximum``: bounds of a number. ``choices``: allowed string values.
    """

    kinds: tuple[str, ...]
    doc: str
    component: str | None = None
    items: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False


def kind_of(value: Any) -> str:
    """The TOML kind of a parsed value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return "datetime"
    return type(value).__name__


def accepts(kinds: tuple[str, ...], value: Any) -> bool:
    kind = kind_of(value)
    if "any" in kinds or kind in kinds:
        return True
    return "number" in kinds and kind in ("integer", "float")


_ARTICLE = {"integer": "an integer", "array": "an array", "any": "any value"}


def describe(kinds: tuple[str, ...]) -> str:
    return " or ".join(_ARTICLE.get(k, f"a {k}") for k in kinds)


_PY_KINDS: dict[type, tuple[str, ...]] = {
    str: ("string",),
    int: ("integer",),
    float: ("number",),
    bool: ("boolean",),
    list: ("array",),
    tuple: ("array",),
    dict: ("table",),
    _dt.datetime: ("datetime",),
    object: ("any",),
}


def kinds_from_python(spec: Any) -> tuple[str, ...]:
    """Turn what a plugin declared (``str``, ``(int, float)``, ``"string"``) into kinds."""
    if isinstance(spec, Key):
        return spec.kinds
    if spec is None or spec is Any:
        return ("any",)
    if isinstance(spec, str):
        return (spec,)
    specs = spec if isinstance(spec, tuple) else (spec,)
    out: list[str] = []
    for s in specs:
        if isinstance(s, str):
            out.append(s)
        else:
            out.extend(_PY_KINDS.get(s, ("any",)))
    return tuple(dict.fromkeys(out))
