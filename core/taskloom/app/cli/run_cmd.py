"""``taskloom run`` and ``taskloom validate``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import click

from taskloom.app.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    build_engine,
    config_options,
    config_path,
    fail,
    load,
    param_option,
    start_exporters,
    stop_exporters,
)
from taskloom.app.cli.prune_cmd import apply_retention
from taskloom.app.config import check_config, find_config, searched
from taskloom.kernel.errors import ConfigError, TaskloomError
from taskloom.kernel.states import TERMINAL, TaskState

#: How often the display is redrawn and Ctrl-C is looked at, in seconds.
_TICK = 0.1


class _Interrupts:
    """Counts SIGINTs and SIGTERMs instead of dying, so the main loop decides what each one
    means: a service manager's SIGTERM stops a run like a first Ctrl-C."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.count = 0
        self.names: list[str] = []
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.names.append(signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _stop_new_starts(run: Any) -> int:
    """Cancel every task that has not started; running ones go on, except waiting steps
    (their recorded wait goes on when the run is resumed). Returns how many run."""
    running = 0
    with run._lock:  # nothing may be dispatched between the checks and the cancels
        for task in list(run.tasks.values()):
            if task.status is TaskState.RUNNING and task.executor == "wait":
                run.cancel_task(task)
            elif task.status is TaskState.RUNNING:
                running += 1
            elif task.status not in TERMINAL:
                run.cancel_task(task)
    return running


@click.command()
@config_options
@click.option("-v", "--verbose", count=True,
              help="A line per finished task (-vv: per started task too).")
@click.option("--store", default=None, metavar="NAME",
              help="Where the run is recorded (default: the run history's store, sqlite in "
                   "the standard plugins; 'none' for nothing).")
@click.option("--task", "only", multiple=True, metavar="NAME",
              help="Run only this task and what it depends on. Repeatable.")
@click.option("--on-limit", type=click.Choice(["wait", "refuse"]), default=None,
              help="When the workflow already has max_active_runs runs going: wait for a "
                   "place, or exit 2 (default: [taskloom] on_limit, else wait).")
@click.option("--run-id", default=None, metavar="ID",
              help="Run under this id (an idempotency key): a recorded completed run with it "
                   "runs nothing; one running elsewhere is waited for (or, with --on-conflict "
                   "error, exit 2).")
@click.option("--on-conflict", type=click.Choice(["wait", "error"]), default=None,
              help="When --run-id is being run by another process: wait for it, or exit 2 "
                   "naming it (default: [taskloom] on_conflict, else wait).")
@param_option
def run(file: str | None, config_file: str | None, sets: Sequence[str], verbose: int,
        store: str | None, only: Sequence[str], on_limit: str | None, run_id: str | None,
        on_conflict: str | None, param_items: Sequence[str]) -> None:
    """Run the tasks declared in FILE (default: taskloom.toml, or [tool.taskloom] in
    pyproject.toml, in this folder or above).

    Shows live progress. Exit status: 0 every task completed, 1 a task failed or was
    cancelled or the store could not record the run, 2 bad input or refused by
    max_active_runs, 130 interrupted. The first Ctrl-C starts nothing new and waits for
    running tasks; a second cancels them.

    The run is recorded with its parameters (--param, [params] defaults), the --set and
    TASKLOOM_* overrides and the store settings it used: 'taskloom resume' applies them
    again. With [taskloom] max_active_runs = N, at most
    N runs of this workflow (the file's name) go at once across processes sharing the store.

    \b
    Examples:
      taskloom run examples/etl/taskloom.toml
      taskloom run examples/etl/taskloom.toml -v --set taskloom.max_workers=2
      taskloom run --task report --set tasks.report.retry=5
      taskloom run --param date=2026-12-01
    """
    config = load(file, config_file, sets)
    params = run_params(config, param_items)
    try:
        tasks = config.build_tasks()
        conditions = config.conditions()
    except ConfigError as exc:
        fail(exc.problems, exc.source)
    if only:
        tasks = _closure(tasks, only, str(config.path) if config.path else None)
    if not tasks:
        fail(["no tasks to run (declare [tasks.NAME] tables)"],
             str(config.path) if config.path else None)
    engine = build_engine(config, store=store)
    record_settings(engine, config, on_limit=on_limit, on_conflict=on_conflict)
    exporters = start_exporters(engine, config)
    try:
        code = _execute(engine, config, tasks, conditions, verbose, run_id, params)
    finally:
        stop_exporters(exporters)
    pruned = apply_retention(engine.store, config.settings)
    if pruned:
        click.echo(pruned, err=True)
    raise SystemExit(code)


def run_params(config: Any, items: Sequence[str]) -> dict[str, Any]:
    """The run's parameter values, or exit 2 naming each parameter at fault."""
    from taskloom.api.params import parse_assignments

    try:
        return config.resolve_params(parse_assignments(items))  # type: ignore[no-any-return]
    except ConfigError as exc:
        fail(exc.problems, str(config.path) if config.path else None)


def _execute(engine: Any, config: Any, tasks: list[Any], conditions: dict[str, Any],
             verbose: int, run_id: str | None = None,
             params: dict[str, Any] | None = None) -> int:
    from taskloom.app.cli.progress import ProgressObserver, ProgressView

    observer = ProgressObserver()
    engine.plugins.register(observer, name="taskloom-cli-progress")
    name = config.path.stem if config.path and config.path.name != "taskloom.toml" else (
        config.path.resolve().parent.name if config.path else "taskloom")
    view = ProgressView(observer, len(tasks), name, verbose)
    try:
        run_id, release = engine.claim(run_id, name)
    except TaskloomError as exc:  # refused by max_active_runs, or the id is held elsewhere
        fail([str(exc)], str(config.path) if config.path else None)
    try:
        recorded = engine.store.summary(run_id) if run_id and engine.store else None
        if recorded is not None:
            if recorded["status"] == "completed":
                click.echo(f"run {run_id} already completed; nothing to do")
                return EXIT_OK
            fail([f"run {run_id} is recorded as {recorded['status']}: finish it with "
                  f"'taskloom resume {run_id}'"])
        return _execute_claimed(engine, config, tasks, conditions, run_id, name, view, params)
    finally:
        release()


def _execute_claimed(engine: Any, config: Any, tasks: list[Any], conditions: dict[str, Any],
                     run_id: str | None, name: str, view: Any,
                     params: dict[str, Any] | None = None) -> int:
    from taskloom.api.workflows import Flow

    try:
        run_ = engine.open_run(run_id=run_id, name=name, trigger="manual", params=params)
    except TaskloomError as exc:
        fail([str(exc)])
    flow = Flow(run_, tasks, {k: v for k, v in conditions.items()
                              if k in {t.name for t in tasks}})
    # The handler is in place before the first task starts: no Ctrl-C is ever a traceback.
    with _Interrupts() as interrupts:
        try:
            flow.start()
        except TaskloomError as exc:
            run_.cancel()
            run_.close()
            fail([str(exc)], str(config.path) if config.path else None)
        try:
            with view:
                _drive(flow, run_, view, interrupts)
        except TaskloomError as exc:  # a task refused as it joined the run (a held one)
            run_.cancel()
            run_.close()
            fail([str(exc)], str(config.path) if config.path else None)
        except BaseException:
            run_.cancel()
            run_.close()
            raise
        summary = run_.close()
    held = [t.name for t in flow.held]
    recorded = getattr(engine.store, "path", None) is not None
    _report(view, summary, held, flow.errors, recorded, interrupts.names)
    if interrupts.count:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.ok and not flow.errors else EXIT_FAILED


#: Store options that say where or for which file, not how: never re-applied by a resume.
_PLACE_OPTIONS = frozenset({"path", "config_path", "overrides"})


def record_settings(engine: Any, config: Any, *, on_limit: str | None = None,
                    on_conflict: str | None = None) -> None:
    """Give the engine the configuration's claim settings (and the command line's), and its
    store what a resume needs to apply again: the overrides and the store's settings."""
    from taskloom.app.config import dotted_key

    settings = config.settings
    engine.claim_options = {k: settings[k] for k in ("max_active_runs", "on_limit",
                                                     "on_conflict") if k in settings}
    for key, value in (("on_limit", on_limit), ("on_conflict", on_conflict)):
        if value is not None:
            engine.claim_options[key] = value
    store = engine.store
    if store is None or not hasattr(store, "overrides"):
        return
    recorded = dict(config.overrides)
    if "store" in settings:
        recorded["taskloom.store"] = settings["store"]
    for key, value in getattr(store, "settings", {}).items():
        if key not in _PLACE_OPTIONS:
            recorded[dotted_key(("taskloom", "store_options", key))] = value
    store.overrides = recorded


def _drive(flow: Any, run: Any, view: Any, interrupts: _Interrupts) -> None:
    """Step the run, redraw, and act on Ctrl-C: the first stops new starts, the next cancel."""
    stage = 0
    while True:
        finished = flow.step(_TICK)
        if interrupts.count > stage:
            stage = interrupts.count
            why = interrupts.names[-1]
            run.interrupt(", ".join(dict.fromkeys(interrupts.names)))  # recorded as the reason
            if stage == 1:
                flow.stop()
                running = _stop_new_starts(run)
                view.print(f"[yellow]Interrupted ({why}): starting nothing new, waiting for "
                           f"{running} running task(s); Ctrl-C again to cancel them.[/]")
                if any(t.executor == "wait" and t.status is TaskState.CANCELLED
                       for t in run.tasks.values()):
                    view.print("[yellow]Steps waiting for a signal or a time stay recorded: "
                               f"'taskloom resume {run.id}' goes on with them.[/]")
            else:
                view.print(f"[red]Cancelling running tasks ({why}).[/]")
                run.cancel()
        elif stage == 1:
            _stop_new_starts(run)  # a retry decided meanwhile must not start either
        view.total = max(view.total, len(run.tasks))  # mapped instances, tasks added live
        view.update()
        if finished:
            return


def _closure(tasks: list[Any], only: Sequence[str], source: str | None) -> list[Any]:
    by_name = {t.name: t for t in tasks}
    missing = [n for n in only if n not in by_name]
    if missing:
        fail([f"--task {n}: no such task" for n in missing], source)
    keep: dict[str, Any] = {}
    stack = list(only)
    while stack:
        name = stack.pop()
        if name not in keep:
            keep[name] = by_name[name]
            stack.extend(by_name[name].dependencies)
    return [t for t in tasks if t.name in keep]


def _report(view: Any, summary: Any, held: list[str], errors: dict[str, BaseException],
            recorded: bool, signals: Sequence[str]) -> None:
    from rich.markup import escape

    from taskloom.app.cli.progress import describe

    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary.counts.items()))
    style = "green" if summary.ok and not errors else "red"
    why = f" by {', '.join(dict.fromkeys(signals))}" if signals else ""
    why = why if summary.status == "interrupted" or not why else f" (interrupted{why})"
    view.print(f"[{style}]run {summary.id} {summary.status}[/]{why}: {counts} "
               f"in {summary.duration:.2f}s")
    failed = False
    for name, error in summary.errors.items():
        task = next((t for t in summary.tasks if t.name == name), None)
        if task is not None and task.status in (TaskState.FAILED, TaskState.CANCELLED):
            failed = True
            view.print(f"  [red]{escape(name)}[/] {task.status.value}: "
                       f"{escape(describe(task.exception or error))}")
    for name, exc in errors.items():
        view.print(f"  [red]{escape(name)}[/] condition raised {escape(describe(exc))}")
    if held:
        view.print(f"  not started: {', '.join(held)}")
    if failed and recorded:
        view.print(f"  tracebacks and attempts: taskloom show {summary.id}")
    if summary.store_error is not None:
        view.print(f"  [red]store error[/]: {escape(summary.store_error)}")


@click.command()
@config_options
@click.option("--no-import", is_flag=True,
              help="Do not import the call/when references (schema and names only).")
def validate(file: str | None, config_file: str | None, sets: Sequence[str],
             no_import: bool) -> None:
    """Check FILE and list every problem with its key path; exit 2 when there are any.

    Checks the keys and their types, component names against the installed plugins
    (queues, executors, stores, triggers), dependencies and cycles, schedules (cron
    expressions, time zones), and imports every call and when reference.

    \b
    Examples:
      taskloom validate examples/etl/taskloom.toml
      taskloom validate pyproject.toml --set taskloom.queue=fifo
    """
    path = config_path(file, config_file)
    if path is None:
        path = find_config()
    if path is None:
        fail([f"no configuration file found: {searched()}"])
    config, problems = check_config(path, list(sets), imports=not no_import)
    source = str(path)
    if problems or config is None:
        fail(problems, source)
    what = f"{source} [tool.taskloom]" if path.name == "pyproject.toml" else source
    click.echo(f"{what}: OK ({len(config.tasks)} task(s), {len(config.schedules)} "
               f"schedule(s))")
    raise SystemExit(EXIT_OK)


__all__ = ["run", "validate"]
