"""A layered layout of a task graph, and the graph and the Gantt timeline drawn as SVG.

The layout is the classic layered (Sugiyama-style) one, kept small:

1. **Layers by longest path**: a task with no dependencies is in layer 0; any other task is
   one layer after its deepest dependency, so every edge points to a later layer.
2. **Order inside a layer by barycentre**: starting from the declaration order, layers are
   swept left to right (each task placed at the mean position of its dependencies) and right
   to left (the mean position of its dependents), a few times; ties keep the previous order,
   so the result is deterministic. This removes most edge crossings of ordinary workflows.
3. **Coordinates**: layers are columns (the graph reads left to right), tasks are rows inside
   their column, each column centred on the tallest one.

It runs in linear time per sweep: a 5,000-task graph is laid out in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

NODE_W = 180
NODE_H = 26
COL_GAP = 70
ROW_GAP = 10
MARGIN = 10
SWEEPS = 4


@dataclass(slots=True)
class Placed:
    name: str
    layer: int
    row: int
    x: float
    y: float


@dataclass
class Layout:
    nodes: dict[str, Placed]
    edges: list[tuple[str, str]]
    width: float
    height: float


def layers(names: Sequence[str], deps: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Longest-path layering. Dependencies on unknown tasks are ignored; tasks caught in a
    cycle (a graph that never validated) go to one layer after all others."""
    known = set(names)
    ups = {n: [d for d in dict.fromkeys(deps.get(n, ())) if d in known and d != n]
           for n in names}
    downs: dict[str, list[str]] = {n: [] for n in names}
    waiting = {n: len(ups[n]) for n in names}
    for n in names:
        for d in ups[n]:
            downs[d].append(n)
    layer = {n: 0 for n in names}
    ready = [n for n in names if waiting[n] == 0]
    done: list[str] = []
    while ready:
        n = ready.pop()
        done.append(n)
        for m in downs[n]:
            layer[m] = max(layer[m], layer[n] + 1)
            waiting[m] -= 1
            if waiting[m] == 0:
                ready.append(m)
    if len(done) < len(names):
        last = max((layer[n] for n in done), default=-1) + 1
        for n in names:
            if waiting[n]:
                layer[n] = last
    return layer


def layout(names: Sequence[str], deps: Mapping[str, Iterable[str]]) -> Layout:
    """Place ``names`` (in declaration order) given each one's dependencies."""
    layer = layers(names, deps)
    known = set(names)
    edges = [(d, n) for n in names for d in dict.fromkeys(deps.get(n, ()))
             if d in known and d != n]
    ups: dict[str, list[str]] = {n: [] for n in names}
    downs: dict[str, list[str]] = {n: [] for n in names}
    for d, n in edges:
        ups[n].append(d)
        downs[d].append(n)
    count = max(layer.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(count)]
    for n in names:
        columns[layer[n]].append(n)
    pos = {n: float(i) for col in columns for i, n in enumerate(col)}
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        order = range(1, count) if forward else range(count - 2, -1, -1)
        for i in order:
            col = columns[i]
            keys = {}
            for j, n in enumerate(col):
                nbrs = ups[n] if forward else downs[n]
                keys[n] = (sum(pos[m] for m in nbrs) / len(nbrs)) if nbrs else pos[n]
                keys[n] = keys[n] + j * 1e-9  # stable: ties keep the current order
            col.sort(key=keys.__getitem__)
            for j, n in enumerate(col):
                pos[n] = float(j)
    tallest = max((len(c) for c in columns), default=0)
    nodes: dict[str, Placed] = {}
    for i, col in enumerate(columns):
        shift = (tallest - len(col)) * (NODE_H + ROW_GAP) / 2
        for j, n in enumerate(col):
            nodes[n] = Placed(n, i, j, MARGIN + i * (NODE_W + COL_GAP),
                              MARGIN + shift + j * (NODE_H + ROW_GAP))
    width = MARGIN * 2 + count * NODE_W + max(count - 1, 0) * COL_GAP
    height = MARGIN * 2 + tallest * NODE_H + max(tallest - 1, 0) * ROW_GAP
    return Layout(nodes, edges, width, height)


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def graph_svg(graph: Layout, states: Mapping[str, str], link: str | None = None) -> str:
    """The laid-out graph as SVG: a box per task with its state as a CSS class (``s-STATE``),
    a curve per dependency. ``link``: a URL prefix; a task's box links to ``link + name``
    (and its details on that page)."""
    out = [f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{graph.width:.0f}" '
           f'height="{graph.height:.0f}" viewBox="0 0 {graph.width:.0f} {graph.height:.0f}">']
    nodes = graph.nodes
    half = NODE_H / 2
    # All edges in one path element: thousands of elements cost the browser far more.
    curves = []
    for up, down in graph.edges:
        a, b = nodes[up], nodes[down]
        x1, y1, x2, y2 = a.x + NODE_W, a.y + half, b.x, b.y + half
        mid = (x1 + x2) / 2
        curves.append(f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} "
                      f"{x2:.0f},{y2:.0f}")
    if curves:
        out.append(f'<path class="edges" d="{" ".join(curves)}"/>')
    for name, p in nodes.items():
        state = states.get(name, "pending")
        label = escape(_short(name, 24))
        full = escape(f"{name}: {state}")
        box = (f'<g class="node s-{escape(state)}" data-task="{escape(name)}">'
               f"<title>{full}</title>"
               f'<rect x="{p.x:.0f}" y="{p.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="4"/>'
               f'<text x="{p.x + 8:.0f}" y="{p.y + 17:.0f}">{label}</text></g>')
        if link is not None:
            box = f'<a href="{escape(link + quote(name))}#task-{escape(name)}">{box}</a>'
        out.append(box)
    out.append("</svg>")
    return "".join(out)


@dataclass
class Bar:
    task: str
    number: int
    state: str
    start: float
    end: float
    open: bool  # still running (drawn to "now") or cut off (drawn to the run's last record)


GANTT_LABEL_W = 200
GANTT_PLOT_W = 760
GANTT_ROW_H = 16


def _tick(span: float) -> float:
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
                 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400):
        if span / step <= 8:
            return step
    return span / 8


def _offset(seconds: float) -> str:
    if seconds < 1 and seconds != 0:
        return f"+{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"+{seconds:g} s"
    if seconds < 7200:
        return f"+{seconds / 60:g} min"
    return f"+{seconds / 3600:g} h"


def gantt_svg(rows: Sequence[tuple[str, Sequence[Bar]]], t0: float, t1: float,
              now: float | None = None) -> str:
    """Attempts on a time axis from ``t0`` to ``t1``, one row per task. Open attempts are
    drawn dashed to their end; ``now`` (a run in progress) draws a line there."""
    span = max(t1 - t0, 1e-3)
    scale = GANTT_PLOT_W / span
    axis_h = 20
    height = axis_h + len(rows) * GANTT_ROW_H + 4
    width = GANTT_LABEL_W + GANTT_PLOT_W + 60  # room for the last tick's label
    out = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">']
    step = _tick(span)
    k = 0
    while k * step <= span + 1e-9:
        x = GANTT_LABEL_W + k * step * scale
        out.append(f'<line class="tick" x1="{x:.1f}" y1="{axis_h - 4}" x2="{x:.1f}" '
                   f'y2="{height}"/><text class="axis" x="{x + 2:.1f}" y="12">'
                   f"{_offset(round(k * step, 6))}</text>")
        k += 1
    for i, (task, bars) in enumerate(rows):
        y = axis_h + i * GANTT_ROW_H
        out.append(f'<text class="label" x="4" y="{y + 12}">{escape(_short(task, 28))}</text>')
        for bar in bars:
            x = GANTT_LABEL_W + (bar.start - t0) * scale
            w = max((bar.end - bar.start) * scale, 2.0)
            cls = f"bar s-{escape(bar.state)}" + (" open" if bar.open else "")
            took = bar.end - bar.start
            tip = escape(f"{task} #{bar.number} {bar.state}, {took:.3f} s"
                         + (" so far" if bar.open else ""))
            out.append(f'<rect class="{cls}" x="{x:.1f}" y="{y + 2}" width="{w:.1f}" '
                       f'height="{GANTT_ROW_H - 4}"><title>{tip}</title></rect>')
    if now is not None:
        x = GANTT_LABEL_W + (now - t0) * scale
        out.append(f'<line class="now" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}"/>')
    out.append("</svg>")
    return "".join(out)
