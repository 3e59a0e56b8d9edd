"""Per-task observers that exist only while some run needs them.

An implemented hook costs the engine a call on every task even when it returns at once, so
the logging plugin keeps its per-task observers (``taskloom_task_transition`` and friends)
out of a plugin set, registers them when a run that is really logged starts, and takes them
out again when the last such run of that plugin set finishes.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_lock = threading.Lock()
# plugin set -> observer name -> how many observed runs hold it
_holders: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def acquire(plugins: Any, name: str, observer: object) -> None:
    """Register ``observer`` as ``name`` in ``plugins`` unless it is there; count the holder."""
    with _lock:
        counts = _holders.setdefault(plugins, {})
        held = counts.get(name, 0)
        if held == 0 and plugins.pm.get_plugin(name) is None:
            plugins.register(observer, name=name)
        counts[name] = held + 1


def release(plugins: Any, name: str) -> None:
    """Drop one holder; the last one takes the observer out of ``plugins``."""
    with _lock:
        counts = _holders.get(plugins)
        if not counts or name not in counts:
            return
        held = counts[name] - 1
        if held > 0:
            counts[name] = held
            return
        del counts[name]
        if plugins.pm.get_plugin(name) is not None:
            plugins.unregister(name)
