"""What ``taskloom runs``, ``show`` and ``resume`` need from a store that keeps runs: the CLI
asks the ``history`` component for it and never names a store or a file format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


# Read-only members: a store's records may be any objects with these attributes.
class AttemptRecord(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def state(self) -> str: ...  # completed, failed, retrying, cancelled, or running (interrupted)

    @property
    def started(self) -> float: ...

    @property
    def finished(self) -> float | None: ...

    @property
    def error_type(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...

    @property
    def traceback(self) -> str | None: ...

    @property
    def duration(self) -> float | None: ...


class TaskRecord(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def attempts(self) -> Sequence[AttemptRecord]: ...

    @property
    def result_note(self) -> str | None: ...

    @property
    def cache_hit(self) -> bool: ...

    @property
    def error(self) -> str | None: ...


class RunRecord(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def workflow(self) -> str | None: ...

    @property
    def status(self) -> str: ...

    @property
    def started(self) -> float | None: ...

    @property
    def finished(self) -> float | None: ...

    @property
    def duration(self) -> float | None: ...

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def config_path(self) -> str | None: ...

    @property
    def config_hash(self) -> str | None: ...

    @property
    def resumes(self) -> int: ...

    @property
    def tasks(self) -> Sequence[TaskRecord]: ...


class RunHistoryReader(Protocol):
    """Recorded runs, newest first; ``location`` says where they are kept."""

    @property
    def location(self) -> str: ...

    def runs(self, limit: int = 20) -> Sequence[RunRecord]: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def find(self, prefix: str) -> list[str]: ...

    def detail(self, run_id: str) -> RunRecord | None: ...

    def logs(
        self, run_id: str, task: str | None = None, attempt: int | None = None,
        after: float | None = None,
    ) -> Sequence[tuple[str, int, float, str]]:
        """Captured output of the run's attempts in the order they finished: ``(task,
        attempt, time, text)``; ``after`` keeps those recorded later than that time."""
        ...

    def close(self) -> None: ...


class HistoryProvider(Protocol):
    """A ``history`` component: which store records runs for the CLI, and where.

    A provider may also define ``accepts(location: str) -> bool``: the CLI then chooses it
    for a ``--db`` value it accepts (a database URL) or when its store is the configured
    one, and otherwise the provider without ``accepts`` (the default, a local file).
    """

    #: The ``store`` component the CLI records runs with.
    store: str

    def record_options(self, options: Mapping[str, Any], base_dir: Path,
                       config_path: Path | None, location: str | None) -> dict[str, Any]:
        """The store's options for runs of the configuration in ``base_dir``, recorded at
        ``location`` when given (a history :meth:`locate` found)."""

    def locate(self, given: str | None, config_file: str | None) -> str:
        """Where the history is: ``given`` (``--db``), else beside ``config_file``, else the
        nearest from the current folder upwards."""

    def open(self, location: str, read_only: bool = True) -> RunHistoryReader:
        """The history at ``location`` (read-only: nothing written, nothing waited for);
        :class:`~taskloom.TaskloomError` when there is none or it cannot be read."""
