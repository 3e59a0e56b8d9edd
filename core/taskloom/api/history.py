"""What ``taskloom runs``, ``show`` and ``resume`` need from a store that keeps runs: the CLI
asks the ``history`` component for it and never names a store or a file format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


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

    # Read with getattr by the CLI, so a store may lack them: ``reason`` (why an
    # ``interrupted`` run stopped), ``trigger`` and ``parent_id`` (what started it).


class RunPage(Protocol):
    """One page of the run list and how many runs match the filters."""

    @property
    def runs(self) -> Sequence[RunRecord]: ...

    @property
    def total(self) -> int: ...


class RunHistoryReader(Protocol):
    """Recorded runs, newest first; ``location`` says where they are kept."""

    @property
    def location(self) -> str: ...

    def runs(self, limit: int = 20) -> Sequence[RunRecord]: ...

    def runs_page(self, limit: int = 50, offset: int = 0, *, workflow: str | None = None,
                  status: str | None = None, since: float | None = None,
                  until: float | None = None) -> RunPage:
        """Runs newest first, filtered by workflow, status and start time (epoch seconds,
        ``until`` exclusive)."""
        ...

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

    def result_previews(self, run_id: str, size: int = 200) -> Mapping[str, str]:
        """A short text of each stored result: JSON as stored (cut at ``size`` with "…"),
        anything else described, never unpickled."""
        ...

    def result(self, run_id: str, task: str) -> tuple[str, str | None, str | None] | None:
        """A task's whole stored result, never unpickled: ``(kind, JSON text, note)``, the
        text None unless ``kind`` is ``json``; None when the task stored nothing."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PrunableHistory(Protocol):
    """A history that can delete old runs (``taskloom prune``, the ``retention`` setting)."""

    @property
    def location(self) -> str: ...

    def prune(self, older_than: float | None = None, keep: int | None = None, *,
              now: float | None = None, dry_run: bool = False) -> list[str]:
        """Delete the runs that ended more than ``older_than`` seconds before ``now`` except
        the ``keep`` newest, with all their records; never a running one. Returns their ids."""
        ...


@runtime_checkable
class UpgradableHistory(Protocol):
    """A ``history`` component whose store's schema ``taskloom db upgrade`` brings up to date."""

    def upgrade(self, location: str) -> tuple[str, int | None, int]:
        """Apply the pending schema migrations of the history at ``location``: where it is
        (as it may be shown: no password), the version before (None: no schema yet) and
        after. A schema newer than the installed code is
        refused with a :class:`~taskloom.TaskloomError` saying so, and left unchanged."""
        ...


@runtime_checkable
class ChangeWatch(Protocol):
    """One waiter's subscription to a history's changes (:class:`WatchableHistory`)."""

    def wait(self, timeout: float) -> bool:
        """Wait until a change was committed since the last call (or since the watch was
        made), at most ``timeout`` seconds; whether one was."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class WatchableHistory(Protocol):
    """A history that says when its runs change (a database server's notifications), so
    live views wake at a change instead of asking the store again and again. Optional: a
    history without it (a SQLite file) is polled."""

    def watch_changes(self) -> ChangeWatch:
        """A new watch: every run change committed from now on wakes its :meth:`wait`."""
        ...


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

    def locate(self, given: str | None, config_file: str | None,
               options: Mapping[str, Any] | None = None) -> str:
        """Where the history is: ``given`` (``--db``, relative to the current folder), else
        where runs of ``config_file`` are recorded (``options``: its ``store_options``),
        else the nearest from the current folder upwards."""

    def below(self, folder: Path, depth: int = 3) -> list[Path]:
        """Histories in ``folder``'s subfolders down to ``depth`` levels: a hint when none
        is where the CLI looked."""

    def open(self, location: str, read_only: bool = True) -> RunHistoryReader:
        """The history at ``location`` (read-only: nothing written, nothing waited for);
        :class:`~taskloom.TaskloomError` when there is none or it cannot be read."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """Seconds in an age such as ``30d``, ``3h``, ``15m``, ``45s`` or ``2w`` (also ``1.5h``
    and several parts: ``1d12h``); :class:`ValueError` saying what is accepted otherwise."""
    import re

    parts = re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*[smhdw])+\s*", text.strip().lower() or "x")
    if parts is None:
        raise ValueError(f"{text!r} is not an age: a number and a unit, s m h d or w "
                         "(30d, 12h, 1d12h)")
    return sum(float(n) * _UNITS[u]
               for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.lower()))


def parse_since(text: str, now: float) -> float:
    """The epoch time ``text`` names: an age before ``now`` (``7d``, ``3h``) or an ISO date
    or date and time (``2026-12-01``, ``2026-12-01T08:00``, local time unless it has an
    offset); :class:`ValueError` otherwise."""
    from datetime import datetime

    try:
        return now - parse_age(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither an age (7d, 3h) nor a date "
                         "(2026-12-01, 2026-12-01T08:00)") from None
