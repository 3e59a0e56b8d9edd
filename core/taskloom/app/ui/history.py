"""The dashboard's one door to the run history: the store component's history reader.

Everything the pages and the JSON endpoints show comes through :class:`History`, as plain
JSON-ready dictionaries. The store is the registered ``sqlite`` store component, found through
the plugin registry (the core never imports the standard plugins); the reader methods it must
offer are listed in :data:`READER_METHODS`. Results are never unpickled here: the store gives a
short preview of JSON results and a placeholder for anything else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskloom.kernel.errors import ConfigError, TaskloomError

#: What the dashboard calls on the store's history reader.
READER_METHODS = ("runs_page", "status_counts", "workflows", "detail", "run", "find",
                  "run_version", "list_version", "result_previews", "actions", "record_action")

_FINAL = frozenset({"completed", "failed", "cancelled", "skipped"})


class HistoryUnavailable(TaskloomError):
    """The database cannot be read as a run history."""


def open_store(db: str | os.PathLike[str]) -> Any:
    """The history at ``db`` (a database file, or a location another ``history`` component
    accepts, such as a ``postgresql://`` DSN) through the ``history`` component, writable:
    the dashboard records the actions it is asked for."""
    from taskloom.kernel.pluginmanager import load_plugins

    location = os.fspath(db)
    from taskloom.app.cli._common import history_provider

    provider = history_provider(load_plugins(), db=location)
    if provider is None:
        raise HistoryUnavailable("no loaded plugin keeps a run history (a 'history' component)")
    if not callable(getattr(provider, "accepts", None)) and not Path(location).is_file():
        raise HistoryUnavailable(
            f"no run history at {location} (runs are recorded by 'taskloom run')")
    try:
        store = provider.open(location, read_only=False)
    except HistoryUnavailable:
        raise
    except TaskloomError as exc:
        raise HistoryUnavailable(str(exc)) from exc
    missing = [m for m in READER_METHODS if not callable(getattr(store, m, None))]
    if missing:
        store.close()
        raise HistoryUnavailable(
            f"the history at {location} offers no reader for the dashboard (missing "
            f"{', '.join(missing)})")
    return store


def _run_dict(record: Any) -> dict[str, Any]:
    return {
        "id": record.id, "workflow": record.workflow, "status": record.status,
        "started": record.started, "finished": record.finished, "duration": record.duration,
        "counts": dict(record.counts), "config_path": record.config_path,
        "config_hash": record.config_hash, "resumes": record.resumes, "pid": record.pid,
        "trigger": getattr(record, "trigger", None),
        "parent_id": getattr(record, "parent_id", None),
    }


def task_dict(t: Any, preview: str | None) -> dict[str, Any]:
    """A task record with its attempts as JSON-ready dictionaries."""
    return {
        "name": t.name, "state": t.state, "error_type": t.error_type,
        "error": t.error, "cache_hit": t.cache_hit, "result_kind": t.result_kind,
        "result_note": t.result_note, "result_preview": preview,
        "attempts": [{
            "number": a.number, "state": a.state, "started": a.started,
            "finished": a.finished, "duration": a.duration,
            "error_type": a.error_type, "error": a.error, "traceback": a.traceback,
        } for a in t.attempts],
    }


class History:
    """The run history of one database, as the dashboard reads it."""

    def __init__(self, store: Any, location: str | None = None) -> None:
        self.store = store
        # A database file is a path; a database server's is its location as the store shows
        # it (a DSN without its password: it is shown on the pages and given to the actions'
        # child processes, which find the password where libpq looks, as this one did).
        given = location if location is not None else str(store.path)
        self.path: Path | str = Path(given) if Path(given).is_file() else str(store.location)
        self._deps: dict[tuple[str, float], dict[str, list[str]]] = {}

    @classmethod
    def open(cls, db: str | os.PathLike[str]) -> History:
        return cls(open_store(db), os.fspath(db))

    def close(self) -> None:
        self.store.close()

    # -- the run list ---------------------------------------------------------------------------
    def runs(self, *, workflow: str | None = None, status: str | None = None,
             since: float | None = None, until: float | None = None,
             trigger: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        # Only a filter in use is passed on: a history that keeps no trigger still lists runs.
        by_trigger = {"trigger": trigger} if trigger else {}
        page = self.store.runs_page(limit, offset, workflow=workflow, status=status,
                                    since=since, until=until, **by_trigger)
        return {
            "runs": [_run_dict(r) for r in page.runs], "total": page.total,
            "limit": page.limit, "offset": page.offset,
            "counts": self.store.status_counts(workflow=workflow, since=since, until=until,
                                               **by_trigger),
            "workflows": self.store.workflows(),
        }

    def list_version(self) -> tuple[Any, ...]:
        return tuple(self.store.list_version())

    # -- one run ----------------------------------------------------------------------------
    def resolve(self, run: str) -> str | None:
        """The full id of ``run`` (an id or an unambiguous prefix), else None."""
        ids = self.store.find(run)
        if run in ids:
            return run
        return str(ids[0]) if len(ids) == 1 else None

    def summary(self, run_id: str) -> dict[str, Any] | None:
        record = self.store.run(run_id)
        return None if record is None else _run_dict(record)

    def run_version(self, run_id: str) -> tuple[Any, ...] | None:
        version = self.store.run_version(run_id)
        return None if version is None else tuple(version)

    def run(self, run_id: str, *, records: bool = False) -> dict[str, Any] | None:
        """The run with every task: state, attempts (timings, errors with tracebacks),
        result preview; its dependencies (from its configuration file, when it still
        parses) and the actions asked of it. ``records``: ``tasks`` holds the store's task
        records as they are and ``previews`` the result previews, for a caller that turns
        only some of them into dictionaries (:func:`task_dict`)."""
        record = self.store.detail(run_id)
        if record is None:
            return None
        previews = self.store.result_previews(run_id)
        out = _run_dict(record)
        if records:
            out["tasks"] = list(record.tasks)
            out["previews"] = previews
        else:
            out["tasks"] = [task_dict(t, previews.get(t.name)) for t in record.tasks]
        out["dependencies"] = self.dependencies(record.config_path)
        out["actions"] = self.store.actions(run_id)
        out["children"] = self.children(run_id)
        out["now"] = time.time()
        return out

    def states(self, run_id: str) -> dict[str, str]:
        """Each task's latest state, in the order the tasks were first recorded. A store with
        ``task_states`` reads them without building every attempt (a big run's first view);
        any other history gives them from its full record."""
        fast = getattr(self.store, "task_states", None)
        if fast is not None:
            return dict(fast(run_id))
        record = self.store.detail(run_id)
        return {} if record is None else {t.name: t.state for t in record.tasks}

    def task_records(self, run_id: str, names: list[str]) -> list[Any]:
        """The store's records of the tasks ``names`` (in that order), with their attempts;
        only those tasks are built where the store can (``detail(run_id, only=...)``)."""
        if getattr(self.store, "task_states", None) is not None:
            record = self.store.detail(run_id, only=names)
        else:
            record = self.store.detail(run_id)
        by_name = {} if record is None else {t.name: t for t in record.tasks}
        return [by_name[n] for n in names if n in by_name]

    def children(self, run_id: str) -> list[dict[str, Any]]:
        """The runs this run started (their ``parent_id``); none from a history that does not
        record parents."""
        children = getattr(self.store, "children", None)
        return [] if children is None else [_run_dict(r) for r in children(run_id)]

    def log_previews(self, run_id: str, tasks: list[str],
                     size: int) -> dict[tuple[str, int], tuple[str, int]]:
        """The first ``size`` characters of each attempt's captured output of ``tasks``, with
        its whole length: ``(task, attempt) -> (text, length)``."""
        previews = getattr(self.store, "log_previews", None)
        if previews is not None:
            return dict(previews(run_id, tasks, size))
        out = {}
        for task in tasks:  # a history without the cut-down query: cut here
            for name, attempt, _, text in self.store.logs(run_id, task):
                out[(name, attempt)] = (text[:size], len(text))
        return out

    def log(self, run_id: str, task: str, attempt: int) -> str | None:
        """One attempt's whole captured output, or None when none was recorded."""
        rows = self.store.logs(run_id, task, attempt)
        return None if not rows else str(rows[-1][3])

    def dependencies(self, config_path: str | None) -> dict[str, list[str]]:
        """Each task's dependencies as the run's configuration file declares them now
        (read without importing any task code); empty when the file is gone or broken."""
        if not config_path:
            return {}
        path = Path(config_path)
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            return {}
        if key not in self._deps:
            self._deps = {key: _declared_dependencies(path)}
        return self._deps[key]

    def watch_changes(self) -> Any:
        """A :class:`~taskloom.api.history.ChangeWatch` when the store announces its changes
        (``watch_changes``, a database server's notifications), else None: poll."""
        watch = getattr(self.store, "watch_changes", None)
        return None if watch is None else watch()

    # -- waits and signals ----------------------------------------------------------------
    def waits(self, run_id: str) -> list[dict[str, Any]]:
        """The run's steps waiting now (task, kind, signal, started, due, schema); none from
        a history that records no waits."""
        waits = getattr(self.store, "waits", None)
        return [] if waits is None else [dict(w) for w in waits(run_id)]

    def signals(self, run_id: str) -> list[dict[str, Any]]:
        """Every signal sent to the run (name, payload, sent, sent_by)."""
        signals = getattr(self.store, "signals", None)
        return [] if signals is None else [dict(s) for s in signals(run_id)]

    @property
    def takes_signals(self) -> bool:
        return callable(getattr(self.store, "send_signal", None))

    def send_signal(self, run_id: str, name: str, payload: Any, sent_by: str) -> None:
        """Record the signal; the store refuses a second one of a name and a payload the
        waiting step's schema does not take (a :class:`TaskloomError` saying why)."""
        self.store.send_signal(run_id, name, payload, sent_by)

    @staticmethod
    def process_gone(run: Mapping[str, Any]) -> bool:
        """Whether no live process holds the run: the process recorded with it has ended
        (a process on this machine; a run recorded without one has none)."""
        import psutil

        pid = run.get("pid")
        return pid is None or (pid != os.getpid() and not psutil.pid_exists(pid))

    # -- actions ----------------------------------------------------------------------------
    def actions(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return list(self.store.actions(run_id))

    def record_action(self, action: str, requested_by: str, *, run_id: str | None = None,
                      workflow: str | None = None, detail: str | None = None) -> int:
        return int(self.store.record_action(action, requested_by, run_id=run_id,
                                            workflow=workflow, detail=detail))


def _declared_dependencies(path: Path) -> dict[str, list[str]]:
    # Only the file's tasks and their depends_on are read, not the whole configuration
    # validated: validating a 5,000-task file takes the better part of a second, and the
    # graph needs nothing else.
    from taskloom.app.config import _read

    try:
        tasks = _read(path).get("tasks")
    except (ConfigError, OSError):
        return {}
    if not isinstance(tasks, dict):
        return {}
    return task_dependencies({name: spec for name, spec in tasks.items()
                              if isinstance(spec, dict)})


def task_dependencies(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, spec in tasks.items():
        deps = spec.get("depends_on") or []
        out[name] = ([deps] if isinstance(deps, str)
                     else [str(d) for d in deps] if isinstance(deps, list) else [])
    return out


def is_final(status: str) -> bool:
    """A run in this status changes no more by itself (interrupted runs wait for a resume)."""
    return status in _FINAL or status == "interrupted"
