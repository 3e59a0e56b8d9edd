"""``taskloom plugins``: what is installed, what each plugin provides, what failed to load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from taskloom.app.cli._common import EXIT_OK, fail
from taskloom.kernel.errors import ConfigError, PluginError


def describe_plugins(config_file: str | None = None) -> list[dict[str, Any]]:
    """One record per plugin: name, module, version, distribution, components, hooks,
    config sections, status (``loaded``, ``disabled`` or ``error``) and the load error."""
    from taskloom.kernel.pluginmanager import load_plugins

    settings: dict[str, Any] = {}
    if config_file is not None:
        from taskloom.app.config import load_config

        settings = load_config(Path(config_file)).settings
    plugins = load_plugins(config={k: settings[k] for k in ("disable_plugins",)
                                   if k in settings})
    sections = getattr(plugins.registry, "_sections", {})
    records = []
    for name, info in sorted(plugins.infos.items()):
        status = "disabled" if info.disabled else "error" if info.error else "loaded"
        records.append({
            "name": name,
            "module": info.module,
            "version": info.version,
            "distribution": info.distribution,
            "status": status,
            "components": {k: sorted(v) for k, v in sorted(info.components.items())},
            "hooks": list(info.hooks),
            "config_sections": sorted(s for s, (_, owner) in sections.items() if owner == name),
            "error": info.error,
        })
    return records


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-c", "--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="Honour this configuration's disable_plugins.")
def plugins(as_json: bool, config_file: str | None) -> None:
    """List the installed plugins: name, version, distribution, the components each
    registers by kind, the hooks each implements, and load errors.

    Plugins come from the `taskloom` entry-point group. Disable one with
    TASKLOOM_DISABLE_PLUGINS=name or disable_plugins = ["name"] in the configuration.

    \b
    Examples:
      taskloom plugins
      taskloom plugins --json | python -m json.tool
      TASKLOOM_DISABLE_PLUGINS=cache taskloom plugins
    """
    try:
        records = describe_plugins(config_file)
    except ConfigError as exc:
        fail(exc.problems, exc.source)
    except PluginError as exc:
        fail([str(exc)])
    if as_json:
        click.echo(json.dumps(records, indent=2))
        raise SystemExit(EXIT_OK)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="taskloom plugins", show_lines=False)
    for column in ("name", "version", "distribution", "components", "hooks", "status"):
        table.add_column(column, overflow="fold")
    for r in records:
        components = "\n".join(f"{kind}: {', '.join(names)}"
                               for kind, names in r["components"].items())
        if r["config_sections"]:
            components += ("\n" if components else "") + "config: " + ", ".join(
                escape(f"[taskloom.{s}]") for s in r["config_sections"])
        hooks = "\n".join(h.removeprefix("taskloom_") for h in r["hooks"])
        status = {"loaded": "[green]loaded[/]", "disabled": "[yellow]disabled[/]"}.get(
            r["status"], f"[red]error: {escape(r['error'] or '')}[/]")
        table.add_row(r["name"], r["version"] or "-", r["distribution"] or "-",
                      components or "-", hooks or "-", status)
    Console(highlight=False).print(table)
    raise SystemExit(EXIT_OK)
