"""taskloom: task orchestration with a minimal core; everything else is a plugin."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from taskloom._version import __version__
from taskloom.api.fakeclock import FakeClock
from taskloom.api.graph import DependencyGraph
from taskloom.api.manager import TaskManager
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

if TYPE_CHECKING:
    from taskloom.api.queue import TaskQueue
    from taskloom.api.scheduling import MemoryScheduleState, ScheduleState
    from taskloom.api.workflows import ConditionalWorkflow, ParallelWorkflow, SequentialWorkflow
    from taskloom.app.config import Config, load_config, validate_config

# Modules a script may never need load on first use, so `import taskloom` stays fast.
_LAZY = {
    "Config": "taskloom.app.config",
    "load_config": "taskloom.app.config",
    "validate_config": "taskloom.app.config",
    "TaskQueue": "taskloom.api.queue",
    "MemoryScheduleState": "taskloom.api.scheduling",
    "ScheduleState": "taskloom.api.scheduling",
    "ConditionalWorkflow": "taskloom.api.workflows",
    "ParallelWorkflow": "taskloom.api.workflows",
    "SequentialWorkflow": "taskloom.api.workflows",
}


def __getattr__(name: str) -> Any:
    if name in ("TaskScheduler", "Job"):
        # The scheduler is a plugin component: found through the registry, not imported.
        from taskloom.api.scheduling import scheduler_class

        cls = scheduler_class()
        value = cls if name == "TaskScheduler" else cls.job_class
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        # Errors a plugin declares (CircuitOpenError): found through the registry.
        error = _plugin_error(name)
        if error is None:
            raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
        globals()[name] = error
        return error
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
