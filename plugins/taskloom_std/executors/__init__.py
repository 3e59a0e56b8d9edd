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


def _wait(**options: Any) -> Executor:
    from taskloom_std.executors.wait import WaitExecutor

    return WaitExecutor(**options)


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
