"""The SQLite store against the memory store, the same workload in the same rounds.

* ``fast`` (WAL, ``synchronous=NORMAL``) on W1 and W3, 2 workers, no-op bodies.
* ``safe`` (``synchronous=FULL``, each result committed before its task completes) on W3
  with 8 workers and bodies of 1 ms (``time.sleep(0.001)``), against the memory store with
  the same workers and bodies.

Each SQLite run is timed up to the moment everything it recorded is committed
(``store.flush()``), so the ratio carries the store's whole cost. One database per row; it
grows with every run, as a real one does.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from common import Row, compare, interleaved
from workloads import Graph, fan_out, layered, noop


def millisecond() -> None:
    time.sleep(0.001)


def _runner(store: str, workers: int, fn: Callable[[], object],
            **options: Any) -> tuple[Callable[[Graph], None], Any]:
    from taskloom import Engine, Task

    engine = Engine(max_workers=workers, store=store, store_options=options)

    def run(graph: Graph) -> None:
        tasks = [Task(name, fn=fn, dependencies=deps) for name, deps in graph.items()]
        summary = engine.run(tasks)
        engine.store.flush()
        if not summary.ok:
            raise RuntimeError(f"benchmark run failed: {summary.counts}")

    return run, engine


def _pair(name: str, graph: Graph, rounds: int, db: str, durability: str, workers: int,
          fn: Callable[[], object], **fields: Any) -> Row:
    sqlite_run, sqlite_engine = _runner("sqlite", workers, fn, path=db, durability=durability)
    memory_run, memory_engine = _runner("memory", workers, fn)
    try:
        times = interleaved({"sqlite": functools.partial(sqlite_run, graph),
                             "memory": functools.partial(memory_run, graph)}, rounds)
    finally:
        sqlite_engine.close()
        memory_engine.close()
    size = os.path.getsize(db) / 1e6
    return compare(name, len(graph), times["sqlite"], times["memory"], "memory store",
                   note=f"database {size:.1f} MB after {rounds + 1} runs", **fields)


def rows(quick: bool) -> list[Row]:
    rounds = 3 if quick else 7
    scale = 5 if quick else 1
    w1, w3 = fan_out(10_000 // scale), layered(50 // scale, 200)
    w3_label = f"layered {len(w3) // 200}x200"
    out: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        out.append(_pair(f"W1 fan-out {len(w1):,}, sqlite store 'fast'", w1, rounds,
                         f"{tmp}/w1.db", "fast", 2, noop))
        out.append(_pair(f"W3 {w3_label}, sqlite store 'fast'", w3, rounds, f"{tmp}/w3.db",
                         "fast", 2, noop, target=">= 0.7x", min_ratio=0.7))
        out.append(_pair(f"W3 {w3_label}, 8 workers, 1 ms bodies, sqlite store 'safe'", w3,
                         rounds if quick else 5, f"{tmp}/safe.db", "safe", 8, millisecond,
                         target=">= 0.2x", min_ratio=0.2))
    return out


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        print(f"{row.workload:60} {row.taskloom.fmt()} {row.unit} vs {row.baseline_name} "
              f"{row.ratio_text()} {row.status()}  {row.note}")
