"""``taskloom ui``: the web dashboard over the run history (needs ``taskloom[ui]``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from taskloom.app.cli._common import fail
from taskloom.app.cli.history_cmd import _configured_store, db_option, locate_history
from taskloom.kernel.errors import TaskloomError

MISSING_EXTRA = "taskloom ui needs the dashboard's dependencies: pip install 'taskloom[ui]'"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@db_option
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="The configuration: its workflow and schedules are shown, runs start from "
                   "it, and its database is read (unless --db).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs a token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="TASKLOOM_UI_TOKEN", default=None,
              help="Every request must carry this token (env TASKLOOM_UI_TOKEN). Required "
                   "when --host is not a loopback address.")
def ui(db: str | None, config_file: str | None, host: str, port: int,
       token: str | None) -> None:
    """Serve the dashboard: runs (live), each run's graph and timeline, the workflow and its
    schedules; re-run failed tasks, cancel a running run, start a run.

    \b
    Examples:
      taskloom ui --config examples/etl/taskloom.toml
      TASKLOOM_UI_TOKEN=$(openssl rand -hex 16) taskloom ui --host 0.0.0.0
    """
    if not is_loopback(host) and not token:
        fail([f"--host {host} is not a loopback address: give --token (or set "
              "TASKLOOM_UI_TOKEN) so that only people with it can use the dashboard"])
    try:
        import uvicorn

        from taskloom.app.ui.history import History
        from taskloom.app.ui.server import create_app
    except ImportError:
        fail([MISSING_EXTRA])
    from taskloom.app.cli._common import history_provider
    from taskloom.kernel.pluginmanager import load_plugins

    provider = history_provider(load_plugins(), db=db, store=_configured_store(config_file))
    if provider is None:
        fail(["no loaded plugin keeps a run history (a 'history' component)"])
    location, looked = locate_history(provider, db, config_file)
    try:
        history = History.open(location)
    except TaskloomError as exc:
        fail([str(exc), *looked])
    app = create_app(history, config_path=Path(config_file).resolve() if config_file else None,
                     token=token)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/runs"
    if token:
        address += "?token=" + token
    click.echo(f"taskloom ui: {address}  (history {history.store.location}; Ctrl-C stops)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=2)
    finally:
        history.close()
