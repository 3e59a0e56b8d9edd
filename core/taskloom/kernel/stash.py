"""Typed per-object storage for plugins: a plugin keeps its state on a task, attempt, run or
plugin set under a :class:`StashKey` it owns, instead of in attributes or module globals."""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """A key into a :class:`Stash`; each instance is a distinct key (compared by identity).

    Make one per piece of state, at module level: ``SPAN = StashKey[Span]()``.
    """

    __slots__ = ()


_MISSING: Any = object()

_lock = threading.Lock()


class Stash:
    """Values by :class:`StashKey`, typed by the key: ``stash[SPAN] = span``; ``stash.get(SPAN)``.

    Single operations are atomic under the GIL (one dict operation each), so a plugin may set
    a key from a worker thread and read it from the run's lock holder.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[StashKey[Any], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._data[key])

    def get(self, key: StashKey[T], default: D) -> T | D:
        value = self._data.get(key, _MISSING)
        return default if value is _MISSING else value  # type: ignore[return-value]

    def setdefault(self, key: StashKey[T], default: T) -> T:
        return cast(T, self._data.setdefault(key, default))

    def pop(self, key: StashKey[T], default: D) -> T | D:
        value = self._data.pop(key, _MISSING)
        return default if value is _MISSING else cast(T, value)

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._data[key]

    def __contains__(self, key: StashKey[T]) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)


class HasStash:
    """A ``stash`` made on first use (most tasks and attempts never need one), under a lock so
    two threads cannot each make one."""

    __slots__ = ("_stash",)
    _stash: Stash

    @property
    def stash(self) -> Stash:
        """Plugins' typed state on this object (:class:`Stash`)."""
        try:
            return self._stash
        except AttributeError:
            with _lock:
                try:
                    return self._stash
                except AttributeError:
                    stash = self._stash = Stash()
                    return stash

    def stash_get(self, key: StashKey[T], default: D) -> T | D:
        """``stash.get(key, default)`` without making a stash when there is none (hot paths)."""
        stash: Stash | None = getattr(self, "_stash", None)
        return default if stash is None else stash.get(key, default)
