"""Result cache: a task whose inputs were seen recently returns the stored result unrun.

Task option ``cache``: ``true`` (one hour), a TTL in seconds, or ``{ttl = 3600, key =
"module:fn"}``. The key function receives the task and a dict of its dependency results and
returns a string (or anything JSON-able); by default the key is made from the task's name,
its dependency results and its ``config``. Values that are not JSON are keyed by ``repr``.

Entries live in the engine's store, so with the ``sqlite`` store they survive restarts (the
``memory`` store keeps them in the process). Expiry uses the run's clock. A hit skips the
attempt's body (and the wrappers inside this one), sets ``task.stash[CACHE_HIT]`` to ``True`` and is
recorded by the store with the result.

The wrapper is outermost (``tryfirst``): a hit neither starts a timeout nor counts towards
a circuit breaker.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from taskloom import ConfigError, StashKey, hookimpl
from taskloom_std.policies._common import number

DEFAULT_TTL = 3600.0
KeyFunction = Callable[[Any, dict[str, Any]], Any]

_fallback: Any = None

#: ``Task.stash``: whether the task's last attempt was answered from the cache.
CACHE_HIT: StashKey[bool] = StashKey()


def parse_cache(value: Any, where: str) -> tuple[float, KeyFunction | None] | None:
    """``(ttl, key function)`` from a ``cache`` option, None when off; ConfigError otherwise."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_TTL, None
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"ttl", "key"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: key, ttl")
        ttl = value.get("ttl", DEFAULT_TTL)
        _positive(ttl, f"{where}.ttl")
        return float(ttl), resolve_key(value.get("key"), f"{where}.key")
    _positive(value, where)
    return float(value), None


def _positive(value: Any, where: str) -> None:
    number(value, where)
    if value <= 0:
        raise ConfigError(f"{where} must be a number > 0, got {value!r}")


def resolve_key(spec: Any, where: str) -> KeyFunction | None:
    """A key function from a callable or a ``module:function`` name."""
    if spec is None or callable(spec):
        return spec  # type: ignore[no-any-return]
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{where} must be a callable or 'module:function', got {spec!r}")
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name.strip())
        for part in attr.strip().split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {spec!r} ({exc})") from None
    if not callable(obj):
        raise ConfigError(f"{where}: {spec!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _store(run: Any) -> Any:
    store = getattr(run.engine, "store", None)
    if store is not None:
        return store
    global _fallback
    if _fallback is None:  # an engine without a store still caches, in this process
        from taskloom_std.stores.memory import MemoryStore

        _fallback = MemoryStore()
    return _fallback


class CacheWrapper:
    """Looks the attempt's key up before the body and stores its result after."""

    __slots__ = ("key_fn", "ttl")

    def __init__(self, ttl: float, key_fn: KeyFunction | None) -> None:
        self.ttl = ttl
        self.key_fn = key_fn

    def key(self, attempt: Any) -> str:
        task, run = attempt.task, attempt.run
        deps = {d: run.tasks[d].result for d in dict.fromkeys(task.dependencies)}
        if self.key_fn is not None:
            raw = self.key_fn(task, deps)
            prefix = "key"
        else:
            raw = [task.name, deps, task.config]
            prefix = task.name
        text = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True, default=repr)
        return f"{prefix}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    def _lookup(self, attempt: Any) -> tuple[Any, str, bool, Any]:
        store = _store(attempt.run)
        key = self.key(attempt)
        hit, value = store.cache_get(key, attempt.run.clock.time())
        attempt.task.stash[CACHE_HIT] = hit
        if hit:
            attempt.served_by = "cache"
        return store, key, hit, value

    def _keep(self, store: Any, key: str, attempt: Any, value: Any) -> None:
        store.cache_put(key, attempt.task.name, value, attempt.run.clock.time() + self.ttl)

    def __call__(self, call: Callable[[], Any], attempt: Any) -> Any:
        store, key, hit, value = self._lookup(attempt)
        if hit:
            return value
        value = call()
        self._keep(store, key, attempt, value)
        return value

    async def acall(self, acall: Callable[[], Awaitable[Any]], attempt: Any) -> Any:
        store, key, hit, value = self._lookup(attempt)
        if hit:
            return value
        value = await acall()
        self._keep(store, key, attempt, value)
        return value


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add_task_option("cache", ("boolean", "number", "table"),
                             "result cache: true, a TTL, or {ttl, key}", validate=parse_cache)


@hookimpl(tryfirst=True)
def taskloom_task_wrappers(task: Any) -> Any:
    value = task.options.get("cache") if task.options else None
    if value is None:
        return None
    parsed = parse_cache(value, f"task {task.name!r}: cache")
    if parsed is None:
        return None
    return CacheWrapper(*parsed)
