"""``taskloom graph``: the dependency graph as Mermaid, Graphviz DOT or text.

The renderers take tasks (``name``, ``dependencies``, ``trigger_rule``) so Python users can
draw graphs they built in code too. Order is deterministic: the dependency graph's
topological order (priority, then declaration order).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import click

from taskloom.api.graph import DependencyGraph
from taskloom.app.cli._common import EXIT_OK, config_options, load
from taskloom.app.config import Config, map_over
from taskloom.kernel.task import Task

_MERMAID_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Words Mermaid's flowchart grammar reserves; a task named so gets a generated id.
_MERMAID_RESERVED = frozenset({"end", "graph", "subgraph", "flowchart", "style", "class",
                               "classDef", "click", "linkStyle", "call", "default"})


def _ordered(tasks: Iterable[Task]) -> list[Task]:
    tasks = list(tasks)
    by_name = {t.name: t for t in tasks}
    graph = DependencyGraph()
    for t in tasks:
        graph.add_task(t.name, t.priority)
    for t in tasks:
        for dep in t.dependencies:
            if dep in by_name:
                graph.add_dependency(dep, t.name)
    return [by_name[n] for n in graph.topological_sort()]


def _edges(tasks: Sequence[Task]) -> list[tuple[str, str, str]]:
    """``(upstream, downstream, trigger rule)`` in display order."""
    names = {t.name for t in tasks}
    return [(dep, t.name, t.trigger_rule) for t in tasks
            for dep in dict.fromkeys(t.dependencies) if dep in names]


def to_mermaid(tasks: Iterable[Task], conditional: Collection[str] = (),
               direction: str = "TD", mapped: Mapping[str, str] | None = None) -> str:
    """A Mermaid flowchart: ``a --> b`` when b depends on a; conditional tasks as decisions
    (``name{name}``); a mapped task as one stacked node saying over what and how many
    (``mapped``: name -> that note); a trigger rule other than ``all_success`` labels its
    edges."""
    mapped = mapped or {}
    ordered = _ordered(tasks)
    ids: dict[str, str] = {}
    lines = [f"flowchart {direction}"]
    for i, t in enumerate(ordered):
        safe = _MERMAID_ID.fullmatch(t.name) and t.name not in _MERMAID_RESERVED
        node_id = t.name if safe else f"task{i + 1}"
        ids[t.name] = node_id
        label = t.name.replace('"', "#quot;")
        if t.name in mapped:
            note = mapped[t.name].replace('"', "#quot;")
            lines.append(f'    {node_id}[["{label} ({note})"]]')
        elif t.name in conditional:
            lines.append(f'    {node_id}{{"{label}"}}' if not safe else f"    {node_id}{{{label}}}")
        elif safe:
            lines.append(f"    {node_id}")
        else:
            lines.append(f'    {node_id}["{label}"]')
    for up, down, rule in _edges(ordered):
        arrow = "-->" if rule == "all_success" else f"-->|{rule}|"
        lines.append(f"    {ids[up]} {arrow} {ids[down]}")
    return "\n".join(lines) + "\n"


def _dot_id(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(tasks: Iterable[Task], conditional: Collection[str] = (),
           name: str = "taskloom", mapped: Mapping[str, str] | None = None) -> str:
    """A Graphviz digraph: an edge from each dependency to its dependent."""
    ordered = _ordered(tasks)
    mapped = mapped or {}
    lines = [f"digraph {_dot_id(name)} {{", "    rankdir=TB;", "    node [shape=box];"]
    for t in ordered:
        attrs = " [shape=diamond]" if t.name in conditional else ""
        if t.name in mapped:
            attrs = f" [shape=box3d, label={_dot_id(f'{t.name} ({mapped[t.name]})')}]"
        lines.append(f"    {_dot_id(t.name)}{attrs};")
    for up, down, rule in _edges(ordered):
        attrs = "" if rule == "all_success" else f" [label={_dot_id(rule)}]"
        lines.append(f"    {_dot_id(up)} -> {_dot_id(down)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_text(tasks: Iterable[Task], conditional: Collection[str] = (),
            mapped: Mapping[str, str] | None = None) -> str:
    """One line per task in run order: ``name <- its dependencies``."""
    lines = []
    mapped = mapped or {}
    for t in _ordered(tasks):
        line = t.name
        if t.dependencies:
            line += " <- " + ", ".join(dict.fromkeys(t.dependencies))
        notes = []
        if t.name in conditional:
            notes.append("conditional")
        if t.name in mapped:
            notes.append(mapped[t.name])
        if t.trigger_rule != "all_success":
            notes.append(t.trigger_rule)
        if notes:
            line += f"  [{', '.join(notes)}]"
        lines.append(line)
    return "\n".join(lines) + "\n"


def config_tasks(config: Config) -> tuple[list[Task], set[str]]:
    """The configuration's tasks without importing their bodies, and the conditional ones."""
    tasks: list[Any] = []
    for name, spec in config.tasks.items():
        deps = list(spec.get("depends_on", ()))
        over = map_note(config, spec)
        if over is not None and over[0] in config.tasks and over[0] not in deps:
            deps.append(over[0])
        tasks.append(Task(name, priority=spec.get("priority", 1), dependencies=deps,
                          trigger_rule=spec.get("trigger_rule", "all_success")))
    return tasks, {n for n, spec in config.tasks.items() if "when" in spec}


def map_note(config: Config, spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(source, note)`` for a mapped task: ``map over files x3`` (the count when the
    source is a parameter whose default is a list), else None."""
    over = map_over(spec)
    if over is None:
        return None
    note = f"map over {over}"
    param = config.params.get(over)
    if over not in config.tasks and param is not None and isinstance(param.default, list):
        note += f" x{len(param.default)}"
    return over, note


def mapped_notes(config: Config) -> dict[str, str]:
    """Task name -> what :func:`map_note` says, for the mapped tasks."""
    notes = {name: map_note(config, spec) for name, spec in config.tasks.items()}
    return {name: note[1] for name, note in notes.items() if note is not None}


@click.command()
@config_options
@click.option("-f", "--format", "fmt", type=click.Choice(["mermaid", "dot", "text"]),
              default="mermaid", show_default=True, help="Output format.")
def graph(file: str | None, config_file: str | None, sets: tuple[str, ...], fmt: str) -> None:
    """Print the dependency graph of FILE's tasks.

    Mermaid renders in GitHub, GitLab and most Markdown viewers; DOT renders with
    Graphviz (dot -Tsvg). Conditional tasks (when = ...) are drawn as decisions, a mapped
    task (map = ...) as one node saying over what (and how many, for a list parameter).

    \b
    Examples:
      taskloom graph examples/etl/taskloom.toml
      taskloom graph examples/etl/taskloom.toml --format dot | dot -Tsvg > etl.svg
      taskloom graph --format text
    """
    config = load(file, config_file, sets)
    tasks, conditional = config_tasks(config)
    mapped = mapped_notes(config)
    if fmt == "mermaid":
        out = to_mermaid(tasks, conditional, mapped=mapped)
    elif fmt == "dot":
        out = to_dot(tasks, conditional,
                     name=config.path.parent.name if config.path else "taskloom",
                     mapped=mapped)
    else:
        out = to_text(tasks, conditional, mapped=mapped)
    click.echo(out, nl=False)
    raise SystemExit(EXIT_OK)
