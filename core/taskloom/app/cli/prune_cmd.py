"""``taskloom prune``: delete old runs from the history, and the ``retention`` setting that
does the same after each ``taskloom run``.

Deleting a run deletes everything recorded for it (state changes, errors, results, captured
output, actions); a run that is still running is never deleted. After deleting, ``taskloom
prune`` gives the freed space back to the file system when its store can (SQLite:
``VACUUM``, which rewrites the file; ``--no-vacuum`` skips it) and says how much. The
``retention`` setting only deletes: the pages it frees are reused by the runs that follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from taskloom.api.history import PrunableHistory, parse_age
from taskloom.app.cli._common import EXIT_OK, fail
from taskloom.app.cli.history_cmd import db_option, open_store
from taskloom.kernel.errors import TaskloomError


@click.command()
@click.option("--older-than", "older_than", metavar="AGE", default=None,
              help="Delete runs that ended more than AGE ago: 30d, 12h, 2w, 1d12h.")
@click.option("--keep", type=click.IntRange(min=0), default=None, metavar="N",
              help="Keep the N newest runs whatever their age (alone: delete all but them).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--no-vacuum", "no_vacuum", is_flag=True,
              help="Do not compact the database file after deleting (SQLite: VACUUM "
                   "rewrites the file, and waits for other processes to finish writing).")
@db_option
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Use the history 'taskloom run' records runs of this configuration in.")
def prune(older_than: str | None, keep: int | None, dry_run: bool, no_vacuum: bool,
          db: str | None, config_file: str | None) -> None:
    """Delete old runs and everything recorded for them; a running run is never deleted.

    Then the database file is compacted (SQLite: VACUUM) and the space reclaimed printed.

    \b
    Examples:
      taskloom prune --older-than 30d
      taskloom prune --older-than 7d --keep 100 --dry-run
      taskloom prune --keep 500
    """
    if older_than is None and keep is None:
        fail(["give --older-than AGE, --keep N or both (nothing is deleted without them)"])
    age = _age("--older-than", older_than)
    with open_store(db, config_file, read_only=dry_run) as store:
        if not isinstance(store, PrunableHistory):
            fail([f"the history at {store.location} cannot delete runs"])
        ids = store.prune(age, keep, dry_run=dry_run)
        location = store.location
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{verb} {len(ids)} run(s) from {location}")
        for run_id in ids if dry_run else ():
            click.echo(f"  {run_id}")
        vacuum = getattr(store, "vacuum", None)
        if ids and not dry_run and not no_vacuum and callable(vacuum):
            try:
                before, after = vacuum()
            except TaskloomError as exc:
                # The runs are deleted all the same; their pages serve the runs that follow.
                click.echo(f"{exc}\nthe database file was not compacted; its free pages are "
                           "reused by new runs", err=True)
            else:
                click.echo(f"vacuumed: {_size(before)} -> {_size(after)} "
                           f"({_size(max(before - after, 0))} reclaimed)")
    raise SystemExit(EXIT_OK)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _age(what: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_age(text)
    except ValueError as exc:
        fail([f"{what}: {exc}"])


def apply_retention(store: Any, settings: Mapping[str, Any]) -> str | None:
    """Apply ``[taskloom] retention = {older_than = "30d", keep = 100}`` to the store a run
    was just recorded in: what to print (None when nothing was deleted or there is no such
    setting). A store that cannot delete runs, or fails to, is reported, never fatal: the
    run itself is recorded."""
    retention = settings.get("retention")
    if not isinstance(retention, Mapping) or store is None:
        return None
    if not isinstance(store, PrunableHistory):
        return f"retention: the store {type(store).__name__} cannot delete runs; ignored"
    try:
        age = parse_age(retention["older_than"]) if "older_than" in retention else None
        ids = store.prune(age, retention.get("keep"))
    except (TaskloomError, ValueError) as exc:
        return f"retention: {exc}"
    return f"retention: deleted {len(ids)} old run(s) from {store.location}" if ids else None


__all__ = ["apply_retention", "prune"]
