"""taskloom: task orchestration with a minimal core; everything else is a plugin."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from taskloom._version import __version__
from taskloom.clock import Clock, FakeClock, SystemClock
from taskloom.decisions import Fail, Fallback, Retry
from taskloom.engine import Attempt, Engine, Run, RunSummary, TaskContext
from taskloom.errors import (
    CircuitOpenError,
    ConfigError,
    CycleError,
    DuplicateTaskError,
    GraphError,
    InvalidTransition,
    PluginError,
    QueueFullError,
    TaskCancelled,
    TaskloomError,
    TaskNotFoundError,
    TaskTimeout,
    UnknownComponentError,
    UnknownDependencyError,
    UpstreamFailed,
)
from taskloom.executor import CancelToken, Executor
from taskloom.graph import DependencyGraph
from taskloom.manager import TaskManager
from taskloom.pluginmanager import PluginSet, hookimpl, load_plugins
from taskloom.states import TRANSITIONS, TaskState
from taskloom.task import Task

if TYPE_CHECKING:
    from taskloom.config import Config, load_config, validate_config
    from taskloom.queue import TaskQueue
    from taskloom.scheduler import Job, MemoryScheduleState, ScheduleState, TaskScheduler
    from taskloom.workflows import ConditionalWorkflow, ParallelWorkflow, SequentialWorkflow

# Modules a script may never need load on first use, so `import taskloom` stays fast.
_LAZY = {
    "Config": "taskloom.config",
    "load_config": "taskloom.config",
    "validate_config": "taskloom.config",
    "TaskQueue": "taskloom.queue",
    "Job": "taskloom.scheduler",
    "MemoryScheduleState": "taskloom.scheduler",
    "ScheduleState": "taskloom.scheduler",
    "TaskScheduler": "taskloom.scheduler",
    "ConditionalWorkflow": "taskloom.workflows",
    "ParallelWorkflow": "taskloom.workflows",
    "SequentialWorkflow": "taskloom.workflows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
