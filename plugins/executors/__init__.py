"""Executors: where task bodies run."""

from __future__ import annotations

from typing import Any

from taskloom import hookimpl
from taskloom.plugins.executors.inline import InlineExecutor
from taskloom.plugins.executors.thread import ThreadExecutor


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("executor", "thread", ThreadExecutor)
    registry.add("executor", "inline", InlineExecutor)
