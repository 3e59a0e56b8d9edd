"""``taskloom schedule``: run the ``[[schedules]]`` of a configuration until told to stop."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from taskloom.api.signals import EXECUTOR, WaitResumer
from taskloom.app.cli._common import EXIT_OK, build_engine, config_options, fail, load
from taskloom.kernel.errors import ConfigError, PluginError, TaskloomError, UnknownComponentError
from taskloom.kernel.pluginmanager import hookimpl

#: How often the main thread looks at the stop flag, in seconds (signals land in between).
_TICK = 0.05


def _stamp(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


class FireLog:
    """One line per fire (and per skipped run) on standard output."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _echo(self, line: str) -> None:
        with self._lock:
            click.echo(line)
            sys.stdout.flush()

    @hookimpl(optionalhook=True)
    def taskloom_schedule_fire(self, job: Any, scheduled_for: datetime,
                               fired_at: datetime) -> None:
        late = (fired_at - scheduled_for).total_seconds()
        self._echo(f"{_stamp(fired_at)} fired {job.id} (task {job.task.name}) due "
                   f"{_stamp(scheduled_for)}, {late:.3f}s late")

    @hookimpl
    def taskloom_run_finish(self, run: Any, summary: Any) -> None:
        trigger = getattr(run, "trigger", None)
        if trigger not in ("schedule", "resume"):
            return
        stamp = _stamp(summary.finished_at or datetime.now().astimezone())
        if trigger == "resume":  # a waiting run this scheduler continued
            self._echo(f"{stamp} continued {run.name} (run {run.id}): {summary.status}")
            return
        if summary.status == "completed":
            self._echo(f"{stamp} completed {run.name} (run {run.id}) in "
                       f"{summary.duration:.3f}s")
            return
        why = "; ".join(f"{name}: {error}" for name, error in summary.errors.items())
        if summary.store_error:
            why = f"{why}; {summary.store_error}" if why else summary.store_error
        status = summary.status
        if status == "interrupted" and getattr(run, "interrupted", None):
            status = f"interrupted ({run.interrupted})"
        self._echo(f"{stamp} FAILED {run.name} (run {run.id}): {status}"
                   + (f": {why}" if why else ""))

    @hookimpl(optionalhook=True)
    def taskloom_schedule_misfire(self, job: Any, scheduled_for: datetime,
                                  fired_at: datetime) -> None:
        self._echo(f"{_stamp(fired_at)} skipped {job.id} (task {job.task.name}) due "
                   f"{_stamp(scheduled_for)}: later than its misfire grace time")

    @hookimpl(optionalhook=True)
    def taskloom_schedule_overlap(self, job: Any, scheduled_for: datetime, fired_at: datetime,
                                  running: int) -> None:
        limit = getattr(job, "skipped_by", None) or f"max_instances {job.max_instances}"
        where = " across processes" if limit.startswith("max_active_runs") else ""
        self._echo(f"{_stamp(fired_at)} skipped {job.id} (task {job.task.name}) due "
                   f"{_stamp(scheduled_for)}: {running} run(s) still going{where} ({limit})")


class _StopSignals:
    """SIGTERM and SIGINT set a flag instead of raising.

    Only a plain attribute is touched in the handler: setting a threading.Event there could
    deadlock with the main thread waiting on that same event's lock.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@click.command()
@config_options
@click.option("--cancel-running", is_flag=True, default=None,
              help="On stop, cancel runs still going instead of waiting for them "
                   "(default: the on_stop setting, else wait).")
@click.option("--store", default=None, metavar="NAME",
              help="Where runs and schedule state are kept (default: the run history's store, "
                   "so a restart resumes; 'none' for memory only).")
@click.option("--resume-every", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="SECONDS",
              help="How often to look for waiting runs of FILE whose process is gone and "
                   "whose signal arrived or timer is due, and continue them (0: never).")
def schedule(file: str | None, config_file: str | None, sets: Sequence[str],
             cancel_running: bool | None, store: str | None, resume_every: float) -> None:
    """Run the [[schedules]] declared in FILE until SIGTERM or Ctrl-C.

    Logs a line per fire and one per finished run (a failed run as FAILED, with its errors).
    Each fire is a run of its own that runs the task's upstream tasks afresh
    (reuse_upstream = true in the entry reuses results they had). max_active_runs in an
    entry (default: [taskloom] max_active_runs) bounds its runs going at once across the
    processes sharing the store: a fire over it is skipped with a line saying so. On
    stop, nothing new starts; running tasks finish (or are cancelled, with --cancel-running
    or on_stop = "cancel" in [taskloom]), then the command exits 0.

    It also continues the runs of FILE recorded as waiting whose process is gone, once the
    signal they wait for arrives ('taskloom signal') or their timer is due, as 'taskloom
    resume' would (one line per continued run). A run is claimed first: two schedulers, or
    a scheduler and a manual resume, never run it twice. Its waiting steps that are still
    waiting when the scheduler stops stay recorded.

    \b
    Example:
      [[schedules]]
      task = "extract"
      cron = "30 2 * * *"
      timezone = "Europe/Berlin"

      taskloom schedule taskloom.toml
    """
    from taskloom.api.manager import TaskManager
    from taskloom.api.scheduling import scheduler_class

    config = load(file, config_file, sets)
    source = str(config.path) if config.path else None
    if cancel_running is None:
        cancel_running = config.settings.get("on_stop", "wait") == "cancel"
    try:
        tasks = {t.name: t for t in config.build_tasks()}
    except ConfigError as exc:
        fail(exc.problems, exc.source)
    waits = any(t.executor == EXECUTOR for t in tasks.values())
    if not config.schedules and not (waits and resume_every):
        fail(["no schedules to run (declare [[schedules]] tables) and no waiting steps to "
              "continue"], source)
    engine = build_engine(config, store=store)
    engine.plugins.register(FireLog(), name="taskloom-cli-schedule-log")
    manager = TaskManager(engine=engine)
    for task in tasks.values():
        manager.add_task(task)  # so a scheduled task's dependencies are found by name
    scheduler = scheduler_class(manager.engine.plugins)(manager=manager)
    problems = []
    for i, entry in enumerate(config.schedules):
        options = dict(entry.options)
        if entry.jitter:
            options["jitter"] = entry.jitter
        try:
            job = scheduler.add_job(
                tasks[entry.task], entry.trigger, id=entry.id,
                misfire_grace_time=entry.misfire_grace_time, coalesce=entry.coalesce,
                max_instances=entry.max_instances, reuse_upstream=entry.reuse_upstream,
                max_active_runs=entry.max_active_runs,
                **options,
            )
        except (ConfigError, PluginError, UnknownComponentError, TaskloomError) as exc:
            problems.append(f"schedules[{i}]: {exc}")
            continue
        nxt = job.next_fire_time
        click.echo(f"scheduled {job.id} (task {job.task.name}, {job.trigger!r}): next "
                   f"{_stamp(nxt) if nxt else 'never'}")
    if problems:
        _close(engine)
        fail(problems, source)
    resumer = WaitResumer(engine, _rebuilder(config)) if resume_every else None
    sys.stdout.flush()
    with _StopSignals() as signals:
        scheduler.start()
        if resumer is not None:
            resumer.start(resume_every)
            # Said once the stop signals are handled: from here SIGTERM stops it cleanly.
            click.echo(f"continuing waiting runs every {resume_every:g}s")
            sys.stdout.flush()
        while signals.received is None:
            time.sleep(_TICK)
        click.echo(f"{signals.received}: stopping"
                   + (", cancelling running tasks" if cancel_running else
                      ", waiting for running tasks"))
        sys.stdout.flush()
        for run in manager.runs:  # recorded `interrupted` with the signal, unless they finish
            run.interrupt(signals.received)
        if resumer is not None:
            resumer.stop(signals.received, cancel_running=cancel_running)
        scheduler.shutdown(cancel_running=cancel_running)
        manager.shutdown()
    _close(engine)
    click.echo("stopped")
    raise SystemExit(EXIT_OK)


def _rebuilder(config: Any) -> Any:
    """The resumer's rebuild: fresh tasks of ``config`` for the runs recorded from the same
    file; other runs are left (the database's word never chooses which code runs)."""
    from pathlib import Path

    own = Path(config.path).resolve() if config.path else None

    def rebuild(record: Any) -> tuple[list[Any], dict[str, Any]] | None:
        recorded = getattr(record, "config_path", None)
        if own is None or recorded is None or Path(recorded).resolve() != own:
            return None
        return config.build_tasks(), config.conditions()

    return rebuild


def _close(engine: Any) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()
