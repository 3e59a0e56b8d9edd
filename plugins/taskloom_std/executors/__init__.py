"""Executors: where task bodies run."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from taskloom import hookimpl
from taskloom_std.executors.inline import InlineExecutor
from taskloom_std.executors.thread import ThreadExecutor


class LazyFactory:
    """A component factory that imports its class (``"module:Class"``) on first use, so
    loading the plugin costs nothing (multiprocessing, asyncio, distributed are not free).

    Its signature is the class's, imported only when asked: the generated configuration
    reference lists the class's options.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._cls: Any = None

    def load(self) -> Any:
        if self._cls is None:
            module, _, name = self.target.partition(":")
            self._cls = getattr(importlib.import_module(module), name)
        return self._cls

    def __call__(self, **options: Any) -> Any:
        return self.load()(**options)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.load())

    def __repr__(self) -> str:
        return f"LazyFactory({self.target!r})"


_process = LazyFactory("taskloom_std.executors.process:ProcessExecutor")
_asyncio = LazyFactory("taskloom_std.executors.asyncio_exec:AsyncioExecutor")


_wait = LazyFactory("taskloom_std.executors.wait:WaitExecutor")


def _check_wait(value: Any, where: str) -> None:
    from taskloom.api.signals import parse_wait

    parse_wait(value, where)


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("executor", "thread", ThreadExecutor)
    registry.add("executor", "inline", InlineExecutor)
    registry.add("executor", "process", _process)
    registry.add("executor", "asyncio", _asyncio)
    registry.add("executor", "wait", _wait)
    registry.add_task_option("wait", ("table",), "what a waiting step waits for: {signal, "
                             "timeout, schema}, {sleep} or {until} (wait_for, sleep and "
                             "wait_until in a configuration file)", validate=_check_wait)
