"""``taskloom logs RUN [TASK]``: what a run's task bodies printed and logged, per attempt.

Output is kept by the ``capture`` plugin (on by default for ``taskloom run``) and recorded in
the store when each attempt finishes; ``--follow`` prints attempts as they finish until the
run ends. The history is found as for ``taskloom runs`` (``--db`` is relative to the current
folder).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import click

from taskloom.api.history import RunHistoryReader
from taskloom.app.cli._common import EXIT_OK, fail
from taskloom.app.cli.history_cmd import db_option, open_store, resolve_run

#: How often ``--follow`` looks for newly finished attempts, in seconds.
_POLL = 0.5


@click.command()
@click.argument("run")
@click.argument("task", required=False)
@click.option("--attempt", type=click.IntRange(min=1), default=None,
              help="Only this attempt (1 is the first).")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing attempts as they finish, until the run ends.")
@db_option
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Use the history 'taskloom run' records runs of this configuration in.")
def logs(run: str, task: str | None, attempt: int | None, follow: bool, db: str | None,
         config_file: str | None) -> None:
    """Print what RUN's tasks (or TASK) printed and logged, attempt by attempt.

    \b
    Examples:
      taskloom logs 3f2a
      taskloom logs 3f2a report --attempt 2
      taskloom logs 3f2a --follow
    """
    with open_store(db, config_file) as store:
        run_id = resolve_run(store, run)
        if task is not None and task not in _task_names(store, run_id):
            fail([f"run {run_id} has no task {task!r}"])
        seen = _print(store.logs(run_id, task, attempt), task is None)
        last = seen
        while follow and _running(store, run_id):
            time.sleep(_POLL)
            rows = store.logs(run_id, task, attempt, after=last)
            if rows:
                last = _print(rows, task is None)
        if seen is None and last is None and not follow:
            click.echo(f"no output recorded for run {run_id}"
                       + (f" task {task}" if task else ""), err=True)
    raise SystemExit(EXIT_OK)


def _task_names(store: RunHistoryReader, run_id: str) -> set[str]:
    detail = store.detail(run_id)
    return {t.name for t in detail.tasks} if detail is not None else set()


def _running(store: RunHistoryReader, run_id: str) -> bool:
    record = store.run(run_id)
    return record is not None and record.status == "running"


def _print(rows: Sequence[tuple[str, int, float, str]], with_task: bool) -> float | None:
    last = None
    for name, number, t, text in rows:
        head = f"── {name} attempt {number} " if with_task else f"── attempt {number} "
        click.echo(head + "─" * max(3, 60 - len(head)))
        click.echo(text, nl=not text.endswith("\n"))
        last = t
    return last
