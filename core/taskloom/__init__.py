"""taskloom: task orchestration with a minimal core; everything else is a plugin."""

# Every public name loads on first use (PEP 562), so `import taskloom` (and so the
# `taskloom` command, whose package this is) costs only this file: the engine, pluggy and
# the plugins load when a script first touches them. The imports under TYPE_CHECKING give
# static tools the real names.

from __future__ import annotations

from taskloom._version import __version__

TYPE_CHECKING = False  # `typing` itself is a noticeable part of a bare start
if TYPE_CHECKING:
    from typing import Any

    from taskloom.api.fakeclock import FakeClock
    from taskloom.api.graph import DependencyGraph
    from taskloom.api.manager import TaskManager
    from taskloom.api.queue import TaskQueue
    from taskloom.api.scheduling import MemoryScheduleState, ScheduleState
    from taskloom.api.workflows import ConditionalWorkflow, ParallelWorkflow, SequentialWorkflow
    from taskloom.app.config import Config, load_config, validate_config
    from taskloom.kernel.clock import Clock, SystemClock
    from taskloom.kernel.decisions import Fail, Fallback, Retry
    from taskloom.kernel.engine import Attempt, Engine, Run, RunSummary, TaskContext
    from taskloom.kernel.errors import (
        ConfigError,
        CycleError,
        DuplicateTaskError,
        GraphError,
        InvalidTransition,
        PluginError,
        QueueFullError,
        StoreFailure,
        TaskCancelled,
        TaskloomError,
        TaskNotFoundError,
        TaskTimeout,
        UnknownComponentError,
        UnknownDependencyError,
        UpstreamFailed,
    )
    from taskloom.kernel.executor import CancelToken, Executor
    from taskloom.kernel.pluginmanager import PluginSet, hookimpl, load_plugins
    from taskloom.kernel.stash import Stash, StashKey
    from taskloom.kernel.states import TRANSITIONS, TaskState
    from taskloom.kernel.task import Task

#: public name -> the module that defines it.
_HOMES = {
    "FakeClock": "taskloom.api.fakeclock",
    "DependencyGraph": "taskloom.api.graph",
    "TaskManager": "taskloom.api.manager",
    "TaskQueue": "taskloom.api.queue",
    "MemoryScheduleState": "taskloom.api.scheduling",
    "ScheduleState": "taskloom.api.scheduling",
    "ConditionalWorkflow": "taskloom.api.workflows",
    "ParallelWorkflow": "taskloom.api.workflows",
    "SequentialWorkflow": "taskloom.api.workflows",
    "Config": "taskloom.app.config",
    "load_config": "taskloom.app.config",
    "validate_config": "taskloom.app.config",
    "Clock": "taskloom.kernel.clock",
    "SystemClock": "taskloom.kernel.clock",
    "Fail": "taskloom.kernel.decisions",
    "Fallback": "taskloom.kernel.decisions",
    "Retry": "taskloom.kernel.decisions",
    "Attempt": "taskloom.kernel.engine",
    "Engine": "taskloom.kernel.engine",
    "Run": "taskloom.kernel.engine",
    "RunSummary": "taskloom.kernel.engine",
    "TaskContext": "taskloom.kernel.engine",
    **dict.fromkeys(
        ("ConfigError", "CycleError", "DuplicateTaskError", "GraphError", "InvalidTransition",
         "PluginError", "QueueFullError", "StoreFailure", "TaskCancelled", "TaskloomError",
         "TaskNotFoundError", "TaskTimeout", "UnknownComponentError", "UnknownDependencyError",
         "UpstreamFailed"),
        "taskloom.kernel.errors"),
    "CancelToken": "taskloom.kernel.executor",
    "Executor": "taskloom.kernel.executor",
    "PluginSet": "taskloom.kernel.pluginmanager",
    "hookimpl": "taskloom.kernel.pluginmanager",
    "load_plugins": "taskloom.kernel.pluginmanager",
    "Stash": "taskloom.kernel.stash",
    "StashKey": "taskloom.kernel.stash",
    "TRANSITIONS": "taskloom.kernel.states",
    "TaskState": "taskloom.kernel.states",
    "Task": "taskloom.kernel.task",
}


def __getattr__(name: str) -> Any:
    from importlib import import_module

    if name in ("TaskScheduler", "Job"):
        # The scheduler is a plugin component: found through the registry, not imported.
        from taskloom.api.scheduling import scheduler_class

        cls = scheduler_class()
        value = cls if name == "TaskScheduler" else cls.job_class
    elif name in _HOMES:
        value = getattr(import_module(_HOMES[name]), name)
    else:
        # Errors a plugin declares (CircuitOpenError): found through the registry.
        value = _plugin_error(name)
        if value is None:
            raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _plugin_error(name: str) -> type[TaskloomError] | None:
    if not name[:1].isupper():
        return None
    from taskloom.api.queue import default_plugins

    return default_plugins().registry.errors().get(name)


__all__ = [
    "TRANSITIONS",
    "Attempt",
    "CancelToken",
    "CircuitOpenError",
    "Clock",
    "ConditionalWorkflow",
    "Config",
    "ConfigError",
    "CycleError",
    "DependencyGraph",
    "DuplicateTaskError",
    "Engine",
    "Executor",
    "Fail",
    "FakeClock",
    "Fallback",
    "GraphError",
    "InvalidTransition",
    "Job",
    "MemoryScheduleState",
    "ParallelWorkflow",
    "PluginError",
    "PluginSet",
    "QueueFullError",
    "Retry",
    "Run",
    "RunSummary",
    "ScheduleState",
    "SequentialWorkflow",
    "Stash",
    "StashKey",
    "StoreFailure",
    "SystemClock",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskManager",
    "TaskNotFoundError",
    "TaskQueue",
    "TaskScheduler",
    "TaskState",
    "TaskTimeout",
    "TaskloomError",
    "UnknownComponentError",
    "UnknownDependencyError",
    "UpstreamFailed",
    "__version__",
    "hookimpl",
    "load_config",
    "load_plugins",
    "validate_config",
]
