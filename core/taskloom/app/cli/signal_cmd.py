"""``taskloom signal RUN NAME --data JSON``: send a signal to a recorded run."""

from __future__ import annotations

import json
from typing import Any

import click

from taskloom.app.cli._common import EXIT_OK, fail
from taskloom.app.cli.history_cmd import db_option, open_store, resolve_run
from taskloom.kernel.errors import TaskloomError


@click.command()
@click.argument("run")
@click.argument("name")
@click.option("--data", default="null", metavar="JSON",
              help="The payload, as JSON (default: null). A waiting step with a payload "
                   "schema refuses one that does not match.")
@db_option
def signal(run: str, name: str, data: str, db: str | None) -> None:
    """Send signal NAME to run RUN (an id or an unambiguous prefix) with a JSON payload.

    A step waiting for NAME (wait_for = "NAME") takes it: at once when the run is going in
    a process, or when the run is resumed ('taskloom resume RUN') if its process exited
    while waiting. The first signal of a name is kept; sending it again exits 2.

    \b
    Examples:
      taskloom signal 3f2a approval --data '{"approved": true}'
      taskloom signal 3f2a go
    """
    try:
        payload = json.loads(data)
    except ValueError as exc:
        fail([f"--data: not JSON: {exc}"])
    with open_store(db, read_only=False) as store:
        run_id = resolve_run(store, run)
        send = getattr(store, "send_signal", None)
        if send is None:
            fail(["this run history does not record signals"])
        try:
            send(run_id, name, payload, "cli")
        except TaskloomError as exc:
            fail([str(exc)])
        waits: list[dict[str, Any]] = getattr(store, "waits", lambda _: [])(run_id)
        waiting = [w["task"] for w in waits if w["signal"] == name]
        record = store.run(run_id)
        status = record.status if record is not None else None
    note = f"; waiting for it: {', '.join(waiting)}" if waiting else ""
    if status == "waiting":
        note += f" (the run's process has exited: 'taskloom resume {run_id}' continues it)"
    click.echo(f"signal {name!r} sent to run {run_id}{note}")
    raise SystemExit(EXIT_OK)


__all__ = ["signal"]
