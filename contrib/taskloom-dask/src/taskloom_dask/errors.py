"""Errors raised when a task cannot be sent to a Dask cluster."""

from __future__ import annotations

from taskloom import TaskloomError


class DaskTaskError(TaskloomError):
    """A task cannot run on Dask; ``task`` names it."""

    def __init__(self, task: str, message: str) -> None:
        self.task = task
        super().__init__(f"task {task!r}: {message}")


class NotSerializableError(DaskTaskError, TypeError):
    """The task's body or its arguments (dependency results) cannot be pickled."""
