"""How results and cache values are stored: JSON when that round-trips, else a bounded pickle.

JSON is preferred because any tool can read it. A value JSON would change (a tuple becomes a
list, an int key becomes a string) is pickled instead, so what comes back equals what went
in. Pickles larger than the limit, and values that cannot be pickled, are not stored: the
note says why, and a resumed run executes that task again.

Pickled results are loaded with :mod:`pickle`: only open databases you trust.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

#: Default largest pickled result kept (bytes).
RESULT_LIMIT = 1 << 20

_SCALARS = (str, int, float, bool)


def encode(value: Any, limit: int = RESULT_LIMIT) -> tuple[str, Any, str | None]:
    """``(kind, data, note)``: kind ``none``, ``json``, ``pickle``, or ``missing`` (not stored)."""
    if value is None:
        return "none", None, None
    if type(value) in _SCALARS:
        # A float NaN or infinity is valid in Python's JSON dialect and round-trips.
        return "json", json.dumps(value), None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None:
        try:
            same = json.loads(text) == value
        except Exception:
            same = False
        if same:
            return "json", text, None
    try:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return "missing", None, (
            f"result of type {type(value).__name__} is neither JSON nor picklable "
            f"({type(exc).__name__}: {exc}); not stored"
        )
    if len(blob) > limit:
        return "missing", None, (
            f"pickled result of type {type(value).__name__} is {len(blob):,} bytes, over the "
            f"store's result_limit of {limit:,}; not stored"
        )
    return "pickle", blob, (
        f"pickled ({len(blob):,} bytes): a {type(value).__name__} does not survive JSON unchanged"
    )


def decode(kind: str, data: Any) -> Any:
    """The value :func:`encode` stored; ``missing`` has no value (check before calling)."""
    if kind == "none":
        return None
    if kind == "json":
        return json.loads(data)
    if kind == "pickle":
        return pickle.loads(data)
    raise ValueError(f"no stored value (kind {kind!r})")
