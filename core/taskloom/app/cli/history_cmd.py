"""``taskloom runs``, ``show RUN`` and ``resume RUN``: the recorded runs.

They are read through the ``history`` component (:class:`taskloom.api.history.HistoryProvider`),
which knows the store ``taskloom run`` records with and where. They look where ``run``
records (:func:`locate_history`): beside the configuration (``--config``, else the one found
from the current folder upwards, with its ``store_options``); ``--db PATH`` chooses another
(a relative path is read from the current folder, like every path on the command line).
With no history there, they say where they looked and which histories are below.

``runs`` and ``show`` open the history read-only: they write nothing, load no pickled
result, work on a read-only copy and do not wait for a writer. ``resume`` rebuilds the
workflow only from a configuration the user names (or confirms): a database alone never
decides which code is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from taskloom.api.history import HistoryProvider, RunHistoryReader
from taskloom.app.cli._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, fail, param_option
from taskloom.app.text import counts_text, seconds, when
from taskloom.kernel.errors import ConfigError, TaskloomError

_TICK = 0.2

db_option = click.option(
    "--db", "db", type=click.Path(dir_okay=False),
    help="Where the runs are kept (default: where 'taskloom run' records them, beside the "
         "configuration, searched from the current folder upwards).",
)


@contextmanager
def open_store(db: str | None, config_file: str | None = None,
               read_only: bool = True) -> Iterator[RunHistoryReader]:
    """The recorded runs, read-only unless asked; exit 2 when there are none (saying where
    they were looked for), they cannot be read or are damaged (naming the file and damage)."""
    from taskloom.app.cli._common import history_provider
    from taskloom.kernel.pluginmanager import load_plugins

    provider = history_provider(load_plugins(), db=db, store=_configured_store(config_file))
    if provider is None:
        fail(["no loaded plugin keeps a run history (a 'history' component)"])
    location, looked = locate_history(provider, db, config_file)
    try:
        store = provider.open(location, read_only=read_only)
    except TaskloomError as exc:
        fail([str(exc), *looked])
    try:
        yield store
    except TaskloomError as exc:
        fail([str(exc)])
    finally:
        try:
            store.close()
        except TaskloomError as exc:
            fail([str(exc)])


def locate_history(provider: HistoryProvider, db: str | None,
                   config_file: str | None) -> tuple[str, list[str]]:
    """Where the history is, found as ``taskloom run`` records it: ``--db`` (from the current
    folder), else where the configuration (``--config``, else the one found from the current
    folder upwards) records its runs, else the nearest history from here upwards. Also what
    to tell the user if there is none there: where it was looked for, and what to try."""
    from taskloom.app.config import check_config, find_config, searched

    if db:
        return provider.locate(db, None), []
    config = Path(config_file) if config_file else find_config()
    if config is not None:
        if config_file is not None and not config.is_file():
            fail([f"no such file: {config_file}"])
        loaded, _ = check_config(config, imports=False)
        settings = loaded.settings if loaded is not None else {}
        options = settings.get("store_options")
        location = provider.locate(None, str(config),
                                   options if isinstance(options, dict) else None)
        how = "--config" if config_file else "found from the current folder upwards"
        return location, [f"  (where 'taskloom run' records runs of {config}, {how}; "
                          "give --config FILE or --db PATH for another history)"]
    location = provider.locate(None, None)
    here = Path.cwd()
    looked = [f"  {searched()}; no run history there either"]
    for path in provider.below(here)[:5]:
        rel = path.relative_to(here)
        beside = find_config(path.parent, env={})
        if beside is not None and beside.resolve().is_relative_to(here.resolve()):
            hint = f"--config {beside.resolve().relative_to(here.resolve())}"
        else:
            hint = f"--db {rel}"
        looked.append(f"  a history below this folder: {rel} (taskloom runs {hint})")
    if len(looked) == 1:
        looked.append("  give --config FILE (the runs of that configuration) or --db PATH")
    return location, looked


def _configured_store(config_file: str | None) -> str | None:
    """The store the configuration names (a history in a database server is read through
    that store's provider); None when there is no readable configuration."""
    from taskloom.app.config import load_config

    try:
        config = load_config(Path(config_file) if config_file else None)
    except TaskloomError:
        return None
    store = config.settings.get("store")
    return store if isinstance(store, str) else None


def resolve_run(store: RunHistoryReader, run: str) -> str:
    """The full id of ``run`` (an id or an unambiguous prefix); exit 2 otherwise."""
    ids = store.find(run)
    if run in ids:
        return run
    if len(ids) == 1:
        return str(ids[0])
    if not ids:
        fail([f"no recorded run {run!r} in {store.location}"])
    fail([f"run id {run!r} is ambiguous: {', '.join(ids[:5])}"])


def _console() -> Any:
    """A console; piped output is not wrapped at 80 columns (tables stay one line a row)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 200))


_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow", "interrupted": "red",
          "running": "cyan", "waiting": "magenta"}


_STATUSES = ("running", "waiting", "completed", "failed", "cancelled", "interrupted")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _status_text(record: Any) -> str:
    reason = getattr(record, "reason", None)
    return f"{record.status} ({reason})" if reason and record.status == "interrupted" else (
        record.status)


def run_json(record: Any) -> dict[str, Any]:
    """A run as the JSON ``taskloom runs --json`` and ``show --json`` print (``trigger`` and
    ``parent_id`` are null when the store does not record them)."""
    return {
        "id": record.id, "workflow": record.workflow, "status": record.status,
        "reason": getattr(record, "reason", None),
        "trigger": getattr(record, "trigger", None),
        "parent_id": getattr(record, "parent_id", None),
        "started_at": _iso(record.started), "finished_at": _iso(record.finished),
        "duration": record.duration, "counts": dict(record.counts),
        "resumes": record.resumes, "config_path": record.config_path,
    }


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.command()
@db_option
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many runs to list.")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Use the history 'taskloom run' records runs of this configuration in.")
@click.option("--status", type=click.Choice(_STATUSES), default=None,
              help="Only runs in this status.")
@click.option("--workflow", default=None, metavar="NAME", help="Only runs of this workflow.")
@click.option("--since", default=None, metavar="WHEN",
              help="Only runs started since WHEN: an age (7d, 3h, 30m) or a date "
                   "(2026-12-01, 2026-12-01T08:00, local time).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array: id, workflow, status, reason, trigger, parent_id, "
                   "started_at, finished_at (ISO 8601, UTC), duration, counts...")
def runs(db: str | None, limit: int, config_file: str | None, status: str | None,
         workflow: str | None, since: str | None, as_json: bool) -> None:
    """List recorded runs, newest first: id, workflow, status, start, duration, task counts.

    The history is the one 'taskloom run' records into: beside the configuration found from
    the current folder upwards (or --config), or --db.

    A run stopped by Ctrl-C or SIGTERM shows as ``interrupted (SIGINT)``; one whose process
    died before it finished as ``interrupted`` too. ``taskloom resume RUN`` finishes either.

    \b
    Examples:
      taskloom runs --config examples/etl/taskloom.toml
      taskloom runs --status failed --since 7d
      taskloom runs --json --limit 100
    """
    from rich.table import Table

    from taskloom.api.history import parse_since

    start = None
    if since is not None:
        try:
            start = parse_since(since, time.time())
        except ValueError as exc:
            fail([f"--since: {exc}"])
    with open_store(db, config_file) as store:
        records = list(store.runs_page(limit, workflow=workflow, status=status,
                                       since=start).runs)
        path = store.location
    if as_json:
        _echo_json([run_json(r) for r in records])
        return
    if not records:
        filtered = status or workflow or since
        click.echo(f"no runs {'match' if filtered else 'recorded'} in {path}")
        return
    table = Table(title=f"runs in {path}", title_justify="left")
    for column in ("id", "workflow", "status", "started", "duration", "tasks"):
        table.add_column(column, no_wrap=column != "tasks")
    for r in records:
        style = _STYLE.get(r.status, "")
        text = _status_text(r)
        table.add_row(
            r.id, r.workflow or "-", f"[{style}]{text}[/]" if style else text,
            when(r.started), seconds(r.duration), counts_text(r.counts),
        )
    _console().print(table)


#: How much of a result ``show`` prints, and how many lines of an attempt's output.
_PREVIEW = 200
_LOG_LINES = 20


@click.command()
@click.argument("run")
@db_option
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Use the history 'taskloom run' records runs of this configuration in.")
@click.option("--gantt", "gantt_only", is_flag=True,
              help="Print only the Mermaid Gantt chart.")
@click.option("--max-tasks", default=200, show_default=True,
              help="Tasks drawn in the Gantt chart.")
@click.option("--result", "result_of", default=None, metavar="TASK",
              help="Print TASK's whole stored result (JSON) and nothing else.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run as a JSON object: id, status, ..., tasks (name, status, "
                   "attempts, result: a JSON preview or null).")
def show(run: str, db: str | None, config_file: str | None, gantt_only: bool,
         max_tasks: int, result_of: str | None, as_json: bool) -> None:
    """Show a recorded run: every task's attempts with what they printed, errors with
    tracebacks, a preview of each result, and a Gantt chart of the run as Mermaid (RUN may
    be an unambiguous id prefix).

    Results are shown as the JSON they were stored as; a result that is not JSON was
    pickled, and is never unpickled to be shown.

    \b
    Examples:
      taskloom show 3f2a
      taskloom show 3f2a --result report | jq .
      taskloom show 3f2a --json
    """
    from rich.markup import escape
    from rich.table import Table

    with open_store(db, config_file) as store:
        record = store.detail(resolve_run(store, run))
        if record is None:
            fail([f"no recorded run {run!r} in {store.location}"])
        if result_of is not None:
            _print_result(store, record, result_of)
            return
        previews = dict(store.result_previews(record.id, _PREVIEW))
        outputs = {(name, number): text for name, number, _, text in store.logs(record.id)}
    if as_json:
        _echo_json(_show_json(record, previews))
        return
    chart = gantt(record, max_tasks)
    if gantt_only:
        click.echo(chart, nl=False)
        return
    console = _console()
    console.print(
        f"[bold]run {record.id}[/]  workflow {escape(record.workflow or '-')}  "
        f"status [{_STYLE.get(record.status, 'white')}]{escape(_status_text(record))}[/]"
    )
    console.print(
        f"started {when(record.started)}  finished {when(record.finished)}  "
        f"duration {seconds(record.duration)}  resumed {record.resumes}x  "
        f"tasks: {counts_text(record.counts)}"
    )
    if record.config_path:
        console.print(f"config {escape(record.config_path)} (hash {record.config_hash})")
    table = Table(title="attempts", title_justify="left")
    for column in ("task", "#", "state", "started", "duration", "error / result"):
        table.add_column(column)
    for task in record.tasks:
        if not task.attempts:
            note = task.error or ("cache hit" if task.cache_hit else "")
            if task.state == "completed" and task.name in previews:
                note = f"{note}: {_cut(previews[task.name])}" if note else _cut(
                    previews[task.name])
            table.add_row(escape(task.name), "-", task.state, "-", "-", escape(note))
        for a in task.attempts:
            if a.error is not None:
                note = f"{a.error_type}: {a.error}"
            elif a.state == "completed":
                note = _cut(previews.get(task.name) or task.result_note or "no result stored")
                if task.cache_hit:
                    note = f"cache hit: {note}"
            elif a.state == "running":
                note = "interrupted (runs again on resume)"
            else:
                note = ""
            table.add_row(escape(task.name), str(a.number), a.state, when(a.started),
                          seconds(a.duration), escape(note))
    console.print(table)
    _print_outputs(console, record, outputs)
    for task in record.tasks:
        for a in task.attempts:
            if a.traceback:
                console.print(f"[bold red]{escape(task.name)} attempt {a.number}[/]")
                console.print(escape(a.traceback.rstrip()), highlight=False)
    console.print("```mermaid", highlight=False)
    console.print(chart.rstrip(), highlight=False, markup=False)
    console.print("```", highlight=False)


def _cut(text: str, size: int = 80) -> str:
    """A result preview short enough for one table cell (``--json`` and ``--result`` give
    more)."""
    return text if len(text) <= size else text[:size].rstrip("…") + "…"


def _print_outputs(console: Any, record: Any, outputs: dict[tuple[str, int], str]) -> None:
    """Each attempt's captured output, indented under it, the first lines of it only."""
    from rich.markup import escape

    if not outputs:
        return
    console.print("[bold]output[/]")
    for task in record.tasks:
        for a in task.attempts:
            text = outputs.get((task.name, a.number))
            if not text:
                continue
            console.print(f"  {escape(task.name)} attempt {a.number}")
            lines = text.rstrip("\n").splitlines()
            for line in lines[:_LOG_LINES]:
                console.print("    " + escape(line), highlight=False)
            if len(lines) > _LOG_LINES:
                console.print(f"    ... {len(lines) - _LOG_LINES} more line(s): taskloom logs "
                              f"{record.id} {escape(task.name)} --attempt {a.number}",
                              highlight=False)


def _show_json(record: Any, previews: dict[str, str]) -> dict[str, Any]:
    tasks = []
    for task in record.tasks:
        kind = getattr(task, "result_kind", None)
        tasks.append({
            "name": task.name, "status": task.state,
            "attempts": [{
                "number": a.number, "status": a.state, "started_at": _iso(a.started),
                "finished_at": _iso(a.finished), "duration": a.duration,
                "error_type": a.error_type, "error": a.error,
            } for a in task.attempts],
            "result": "null" if kind == "none" else (
                previews.get(task.name) if kind == "json" else None),
            "result_kind": kind, "result_note": task.result_note,
            "cache_hit": task.cache_hit, "error": task.error,
        })
    return {**run_json(record), "config_hash": record.config_hash, "tasks": tasks}


def _print_result(store: RunHistoryReader, record: Any, task: str) -> None:
    names = [t.name for t in record.tasks]
    if task not in names:
        fail([f"run {record.id} has no task {task!r}"
              + (f" (tasks: {', '.join(names[:10])})" if names else "")])
    stored = store.result(record.id, task)
    if stored is None:
        fail([f"task {task!r} of run {record.id} has no stored result"])
    kind, text, note = stored
    if kind == "json" and text is not None:
        click.echo(text)
    elif kind == "none":
        click.echo("null")
    elif kind == "pickle":
        fail([f"task {task!r} of run {record.id} returned a value that is not JSON "
              f"({note or 'pickled'}): it was stored pickled, and the history never "
              "unpickles (loading a pickle can run code); 'taskloom resume' and "
              "RunSummary.results load it for the run that stored it"])
    else:
        fail([f"the result of task {task!r} of run {record.id} was not stored"
              + (f": {note}" if note else "")])


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c in " _-.()" else "_" for c in text)[:60] or "_"


def gantt(record: Any, max_tasks: int = 200) -> str:
    """A recorded run's attempts as a Mermaid Gantt chart, one section per task."""
    lines = [
        "gantt",
        f"    title {_label(record.workflow or 'run')} run {_label(record.id)}",
        "    dateFormat x",
        "    axisFormat %H:%M:%S",
    ]
    ran = [t for t in record.tasks if t.attempts]
    tags = {"completed": "done, ", "failed": "crit, ", "retrying": "crit, ",
            "running": "active, "}
    for i, task in enumerate(ran[:max_tasks]):
        lines.append(f"    section {_label(task.name)}")
        for a in task.attempts:
            start = int(a.started * 1000)
            end = max(int((a.finished or a.started) * 1000), start + 1)
            tag = tags.get(a.state, "")
            lines.append(f"    #{a.number} {a.state} :{tag}t{i}a{a.number}, {start}, {end}")
    if len(ran) > max_tasks:
        lines.append(f"    %% {len(ran) - max_tasks} more tasks not drawn")
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("run")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@db_option
@click.option("--retry-failed", is_flag=True, help="Run failed tasks again too.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a configuration key, as for 'taskloom run'. Repeatable.")
@click.option("--on-conflict", type=click.Choice(["wait", "error"]), default=None,
              help="When the run is being run (or resumed) by another process: wait for it "
                   "to end, or exit 2 naming it (default: [taskloom] on_conflict, else wait).")
@param_option
def resume(run: str, file: str | None, db: str | None, retry_failed: bool,
           sets: Sequence[str], on_conflict: str | None, param_items: Sequence[str]) -> None:
    """Finish a recorded run: completed tasks keep their stored results, tasks that were
    running when the process died run again (at-least-once), failed tasks stay failed
    unless --retry-failed.

    The workflow is rebuilt from FILE. Without FILE, the configuration found in the current
    folder (as for 'taskloom run') is used when it is the file the run recorded; the
    recorded file alone is used only after you confirm it at a terminal. Exit status: 0
    every task completed, 1 a task failed or the run could not be recorded, 2 bad input,
    130 interrupted.

    The parameters, the --set and TASKLOOM_* overrides and the store settings the run was
    recorded with apply again (this command's own --param and --set win). Only one process
    runs a run at a time: a second resume waits for the first (then has nothing to do) or,
    with --on-conflict error, exits 2 naming the process that holds it.
    """
    from taskloom.app.cli._common import build_engine, show_logs
    from taskloom.app.cli.run_cmd import record_settings, run_params
    from taskloom.app.config import dotted_key, load_config, parse_set

    if file is not None and not Path(file).is_file():
        fail([f"no such file: {file}"])
    with open_store(db, file) as store:
        run_id = resolve_run(store, run)
        record = store.run(run_id)
        location = store.location
        recorded_overrides = getattr(store, "recorded_overrides", None)
        overrides = recorded_overrides(run_id) if recorded_overrides is not None else {}
    if record is None:
        fail([f"no recorded run {run_id!r} in {location}"])
    if record.status == "completed":
        click.echo(f"run {run_id} already completed; nothing to do")
        raise SystemExit(EXIT_OK)
    config_file = file or _recorded_config(run_id, record.config_path)
    digest = hashlib.sha256(Path(config_file).read_bytes()).hexdigest()[:16]
    if record.config_hash and digest != record.config_hash:
        click.echo(f"warning: {config_file} changed since run {run_id} was recorded", err=True)
    try:
        overrides.update((dotted_key(path), value) for path, value, _ in parse_set(sets))
    except ConfigError as exc:
        fail(exc.problems)
    try:  # the overrides as a mapping of dotted keys, the recorded ones first
        config = load_config(config_file, overrides=overrides)
    except ConfigError as exc:
        fail(exc.problems, exc.source)
    section = config.settings.get("logging")
    if isinstance(section, dict) and section.get("level") and section.get("enabled", True):
        show_logs(str(section["level"]), explicit=False)
    params = run_params(config, param_items)
    try:
        tasks = config.build_tasks()
        conditions = config.conditions()
    except ConfigError as exc:
        fail(exc.problems, exc.source)
    engine = build_engine(config, history_at=location)
    record_settings(engine, config, on_conflict=on_conflict)
    try:
        _, release = engine.claim(run_id, record.workflow)
    except TaskloomError as exc:
        engine.close()
        fail([str(exc)])
    try:
        try:
            done = engine.recorded(run_id).status == "completed"  # by whoever held it
        except TaskloomError as exc:
            engine.close()
            fail([str(exc)])
        if done:
            engine.close()
            click.echo(f"run {run_id} already completed; nothing to do")
            raise SystemExit(EXIT_OK)
        code = _finish(engine, run_id, record.workflow, tasks, conditions, retry_failed,
                       params)
    finally:
        release()
    raise SystemExit(code)



def _recorded_config(run_id: str, recorded: str | None) -> str:
    """The configuration to rebuild the run from when no FILE is given: the one found in the
    current folder if it is the recorded file, else the recorded one if the user confirms.
    The database's word alone never chooses the code that is imported."""
    from taskloom.app.config import find_config

    if recorded is None:
        fail([f"run {run_id} recorded no configuration file; give FILE"])
    found = find_config(None)
    if (found is not None and found.is_file() and Path(recorded).is_file()
            and os.path.samefile(found, recorded)):
        return str(found)
    if not Path(recorded).is_file():
        fail([f"the run's configuration {recorded} is gone; give FILE"])
    if sys.stdin.isatty() and click.confirm(
        f"run {run_id} names the configuration {recorded}; rebuild its tasks (and import "
        "the code it names) from that file?", err=True,
    ):
        return recorded
    fail([f"run {run_id} was recorded from {recorded}: give it as FILE to resume "
          f"('taskloom resume {run_id} {recorded}'); a database alone does not choose "
          "which code runs"])


def _finish(engine: Any, run_id: str, workflow: str | None, tasks: list[Any],
            conditions: dict[str, Any], retry_failed: bool,
            params: dict[str, Any] | None = None) -> int:
    from taskloom.api.workflows import Flow

    t0 = time.monotonic()
    try:
        kept = sum(1 for state, stored, *_ in engine.store.outcomes(run_id).values()
                   if state == "completed" and stored)
        run_ = engine.open_resumed_run(run_id, retry_failed=retry_failed, name=workflow,
                                       params=params)
        flow = Flow(run_, tasks, conditions)
        flow.start()
    except TaskloomError as exc:
        engine.close()
        fail([str(exc)])
    code = EXIT_OK
    try:
        while not flow.step(_TICK):
            pass
    except KeyboardInterrupt:
        run_.interrupt("SIGINT")  # recorded as interrupted with its reason, as `run` does
        run_.cancel()
        code = EXIT_INTERRUPTED
    summary = run_.close()
    store_error = summary.store_error
    try:
        engine.close()
    except TaskloomError as exc:
        store_error = store_error or str(exc)
    click.echo(
        f"run {run_id} {summary.status} in {time.monotonic() - t0:.2f}s: "
        f"{counts_text(summary.counts)} ({kept} kept from the record)"
    )
    for name, error in summary.errors.items():
        click.echo(f"  {name}: {error}", err=True)
    if store_error is not None:
        click.echo(f"store error: {store_error}", err=True)
        code = code if code != EXIT_OK else EXIT_FAILED
    if code == EXIT_OK and not summary.ok:
        code = EXIT_FAILED
    return code
