"""Per-task observers that exist only while some run needs them.

An implemented hook costs the engine a call on every task even when it returns at once, so
the logging plugin keeps its per-task observers (``taskloom_task_transition`` and friends)
out of a plugin set, registers them when a run that is really logged starts, and takes them
out again when the last such run of that plugin set finishes.
"""

from __future__ import annotations

import threading
from typing import Any

from taskloom import StashKey

_lock = threading.Lock()
#: ``PluginSet.stash``: observer name -> how many observed runs hold it.
HOLDERS: StashKey[dict[str, int]] = StashKey()


def acquire(plugins: Any, name: str, observer: object) -> None:
    """Register ``observer`` as ``name`` in ``plugins`` unless it is there; count the holder."""
    with _lock:
        counts = plugins.stash.setdefault(HOLDERS, {})
        held = counts.get(name, 0)
        if held == 0 and plugins.pm.get_plugin(name) is None:
            plugins.register(observer, name=name)
        counts[name] = held + 1


def release(plugins: Any, name: str) -> None:
    """Drop one holder; the last one takes the observer out of ``plugins``."""
    with _lock:
        counts = plugins.stash.get(HOLDERS, None)
        if not counts or name not in counts:
            return
        held = counts[name] - 1
        if held > 0:
            counts[name] = held
            return
        del counts[name]
        if plugins.pm.get_plugin(name) is not None:
            plugins.unregister(name)
