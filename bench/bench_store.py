"""W1, W3 and W6 with the SQLite store (durability "fast") against the memory store.

Each SQLite repetition is timed up to the moment everything it recorded is committed
(``store.flush()``), so the ratio carries the store's whole cost.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import Row, Stat, paired, rate
from workloads import Graph, fan_out, layered, noop

HERE = Path(__file__).resolve().parent


def _runner(store: str, path: str | None = None) -> tuple[Callable[[Graph], None], object]:
    from taskloom import Engine, Task

    options = {"path": path, "durability": "fast"} if path else {}
    engine = Engine(max_workers=2, store=store, store_options=options)

    def run(graph: Graph) -> None:
        tasks = [Task(name, fn=noop, dependencies=deps) for name, deps in graph.items()]
        summary = engine.run(tasks)
        engine.store.flush()
        if not summary.ok:
            raise RuntimeError(f"benchmark run failed: {summary.counts}")

    return run, engine


def _pair(wid: str, label: str, graph: Graph, reps: int, db: str) -> Row:
    sqlite_run, sqlite_engine = _runner("sqlite", db)
    memory_run, memory_engine = _runner("memory")
    try:
        t_sql, t_mem = paired(
            functools.partial(sqlite_run, graph), functools.partial(memory_run, graph), reps
        )
    finally:
        sqlite_engine.close()  # type: ignore[attr-defined]
        memory_engine.close()  # type: ignore[attr-defined]
    n = len(graph)
    size = os.path.getsize(db) / 1e6
    return Row(f"{wid} {label}, sqlite store", "tasks/s", rate(n, t_sql), rate(n, t_mem),
               "memory store", target=">= 0.5x", note=f"db {size:.1f} MB after {reps + 1} runs")


def _w6_child(layers: int, width: int, db: str) -> None:
    """W6 once in a fresh process with the SQLite store; prints rate and db size as JSON."""
    run, engine = _runner("sqlite", db)
    graph = layered(layers, width)
    t0 = time.perf_counter()
    run(graph)
    seconds = time.perf_counter() - t0
    engine.close()  # type: ignore[attr-defined]
    print(json.dumps({"rate": len(graph) / seconds, "db_mb": os.path.getsize(db) / 1e6}))


def _w6(db: str) -> list[Row]:
    out = subprocess.run(
        [sys.executable, str(HERE / "bench_store.py"), "--w6-child", "100", "1000", db],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(HERE)},
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    r = res["rate"]
    return [Row("W6 scale (100,000 tasks), sqlite store", "tasks/s", Stat(r, r, r),
                note=f"completes; database {res['db_mb']:.1f} MB")]


def rows(quick: bool) -> list[Row]:
    reps = 3 if quick else 5
    scale = 5 if quick else 1
    out: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        out.append(_pair("W1", "fan-out", fan_out(10_000 // scale), reps, f"{tmp}/w1.db"))
        out.append(_pair("W3", "layered 50x200", layered(50 // scale, 200), reps,
                         f"{tmp}/w3.db"))
        if not quick:
            out += _w6(f"{tmp}/w6.db")
    return out


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--w6-child":
    _w6_child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
elif __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        ratio = "" if row.ratio is None else f"  {row.ratio:.2f}x {row.baseline_name}"
        print(f"{row.workload:45} {row.taskloom.fmt()} {row.unit}{ratio}  {row.note}")
