"""Executors: where task bodies run."""

from __future__ import annotations

from typing import Any

from taskloom import Executor, hookimpl
from taskloom_std.executors.inline import InlineExecutor
from taskloom_std.executors.thread import ThreadExecutor


def _process(**options: Any) -> Executor:
    # Imported on first use: multiprocessing and asyncio are not free at plugin load.
    from taskloom_std.executors.process import ProcessExecutor

    return ProcessExecutor(**options)


def _asyncio(**options: Any) -> Executor:
    from taskloom_std.executors.asyncio_exec import AsyncioExecutor

    return AsyncioExecutor(**options)


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("executor", "thread", ThreadExecutor)
    registry.add("executor", "inline", InlineExecutor)
    registry.add("executor", "process", _process)
    registry.add("executor", "asyncio", _asyncio)
