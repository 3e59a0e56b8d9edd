"""``taskloom db upgrade``: bring the history's database schema up to the installed taskloom.

Opening a store for writing migrates its schema anyway (``taskloom run`` does); this command
does it on purpose, at a chosen time (before starting schedulers on a new version, for
instance), and says which version the database was at and is at now. A database written by
a newer taskloom is refused and left unchanged.
"""

from __future__ import annotations

import click

from taskloom.api.history import UpgradableHistory
from taskloom.app.cli._common import EXIT_OK, fail
from taskloom.app.cli.history_cmd import _configured_store, db_option, locate_history
from taskloom.kernel.errors import TaskloomError


@click.group()
def db() -> None:
    """The history's database: its schema."""


@db.command()
@db_option
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Upgrade the database 'taskloom run' records runs of this configuration in "
                   "(its configured store).")
def upgrade(db: str | None, config_file: str | None) -> None:
    """Apply the pending schema migrations of the run history's database.

    \b
    Examples:
      taskloom db upgrade -c taskloom.toml
      taskloom db upgrade --db postgresql://taskloom@db.internal/taskloom
      taskloom db upgrade --db .taskloom/taskloom.db
    """
    from taskloom.app.cli._common import history_provider
    from taskloom.kernel.pluginmanager import load_plugins

    provider = history_provider(load_plugins(), db=db, store=_configured_store(config_file))
    if provider is None:
        fail(["no loaded plugin keeps a run history (a 'history' component)"])
    if not isinstance(provider, UpgradableHistory):
        fail([f"the history of store {provider.store!r} has no schema to upgrade"])
    location, looked = locate_history(provider, db, config_file)
    try:
        where, before, after = provider.upgrade(location)
    except TaskloomError as exc:
        fail([str(exc), *looked])
    if before == after:
        click.echo(f"{where}: schema version {after}, up to date")
    else:
        was = "no schema" if before is None else f"schema version {before}"
        click.echo(f"{where}: {was} -> schema version {after} (upgraded)")
    raise SystemExit(EXIT_OK)


__all__ = ["db"]
