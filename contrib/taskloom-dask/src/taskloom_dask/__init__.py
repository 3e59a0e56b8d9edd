"""Run taskloom task bodies on a Dask distributed cluster: the ``dask`` executor.

The engine stays where the run is (graph, states, hooks, retries, policies); ready task
bodies go to Dask as futures and their results come back to the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskloom import hookimpl
from taskloom_dask.context import RemoteContext
from taskloom_dask.errors import DaskTaskError, NotSerializableError
from taskloom_std.executors import LazyFactory

if TYPE_CHECKING:
    from taskloom_dask.executor import DaskExecutor

__all__ = [
    "DaskExecutor",
    "DaskTaskError",
    "NotSerializableError",
    "RemoteContext",
]


def __getattr__(name: str) -> Any:
    # Importing distributed takes a quarter of a second: only pay it when Dask is used.
    if name == "DaskExecutor":
        from taskloom_dask.executor import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Imported on first use; the configuration reference reads DaskExecutor's options through it.
_create = LazyFactory("taskloom_dask.executor:DaskExecutor")


@hookimpl
def taskloom_register(registry: Any) -> None:
    registry.add("executor", "dask", _create)
