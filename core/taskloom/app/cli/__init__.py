"""The ``taskloom`` command. Subcommands live in their own modules and load lazily, so
``taskloom --version`` imports nothing it does not need."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from taskloom._version import __version__

#: command name -> "module:attribute". Each module owns its commands.
COMMANDS: dict[str, str] = {
    "run": "taskloom.app.cli.run_cmd:run",
    "validate": "taskloom.app.cli.run_cmd:validate",
    "graph": "taskloom.app.cli.graph_cmd:graph",
    "plugins": "taskloom.app.cli.plugins_cmd:plugins",
    "schedule": "taskloom.app.cli.schedule_cmd:schedule",
    "runs": "taskloom.app.cli.history_cmd:runs",
    "show": "taskloom.app.cli.history_cmd:show",
    "resume": "taskloom.app.cli.history_cmd:resume",
    "logs": "taskloom.app.cli.logs_cmd:logs",
    "prune": "taskloom.app.cli.prune_cmd:prune",
    "ui": "taskloom.app.cli.ui_cmd:ui",
    "signal": "taskloom.app.cli.signal_cmd:signal",
    "db": "taskloom.app.cli.db_cmd:db",
}


def _available(spec: str) -> bool:
    module = spec.partition(":")[0]
    return importlib.util.find_spec(module) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [name for name, spec in COMMANDS.items() if _available(spec)]
        return sorted(set(super().list_commands(ctx)) | set(lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        spec = COMMANDS.get(cmd_name)
        if spec is None or not _available(spec):
            return None
        module, _, attr = spec.partition(":")
        found: Any = getattr(importlib.import_module(module), attr)
        return found  # type: ignore[no-any-return]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="taskloom")
@click.option("--log-level", envvar="TASKLOOM_LOG_LEVEL", default=None, metavar="LEVEL",
              help="Print taskloom's log records at LEVEL and above on stderr (DEBUG, INFO, "
                   "WARNING...; env TASKLOOM_LOG_LEVEL). Default: [taskloom.logging] level "
                   "when set, else warnings only.")
def main(log_level: str | None) -> None:
    """taskloom: run task workflows declared in TOML.

    \b
    Example:
      taskloom run examples/etl/taskloom.toml
      taskloom --log-level INFO run examples/etl/taskloom.toml
    """
    if log_level is not None:
        from taskloom.app.cli._common import show_logs

        show_logs(log_level)
