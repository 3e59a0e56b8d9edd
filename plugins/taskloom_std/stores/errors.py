"""Errors a store raises when it cannot be used as asked."""

from __future__ import annotations

from taskloom.kernel.errors import TaskloomError


class StoreError(TaskloomError):
    """A store cannot be opened or used."""


class StoreCorruptError(StoreError):
    """The file is not a readable taskloom database; it is left untouched."""


class StoreVersionError(StoreError):
    """The database was written by a newer taskloom; it is left untouched."""


class StoreLockedError(StoreError):
    """Another process held the database's write lock for longer than the lock timeout."""


class UnknownRunError(StoreError):
    """No run with that id is recorded."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no recorded run {run_id!r}")
        self.run_id = run_id
