"""The PostgreSQL store against the memory store, the same workload in interleaved rounds.

W3 (layered DAG, 3 deps per task from the previous layer, ``random.Random(42)``), 2 workers,
no-op bodies, store ``postgres`` in ``fast`` durability against ``memory`` in the same
process. The server is a throwaway cluster on 127.0.0.1 (``taskloom_postgres.cluster``) with
``fsync`` on, as a real server runs. Each PostgreSQL run is timed up to the moment everything
it recorded is committed (``store.flush()``), so the ratio carries the store's whole cost.
The target (issue: at least 0.5x the memory store) is reported, never enforced.

    python contrib/taskloom-postgres/bench_postgres.py [--quick]
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import Row, compare, interleaved  # noqa: E402
from workloads import Graph, layered, noop  # noqa: E402


def _runner(store: str, **options: Any) -> tuple[Callable[[Graph], None], Any]:
    from taskloom import Engine, Task

    engine = Engine(max_workers=2, store=store, store_options=options)

    def run(graph: Graph) -> None:
        tasks = [Task(name, fn=noop, dependencies=deps) for name, deps in graph.items()]
        summary = engine.run(tasks)
        engine.store.flush()
        if not summary.ok:
            raise RuntimeError(f"benchmark run failed: {summary.counts}")

    return run, engine


def rows(quick: bool) -> list[Row]:
    from taskloom_postgres.cluster import running_cluster

    rounds = 3 if quick else 7
    w3 = layered(50 // (5 if quick else 1), 200)
    with running_cluster(fsync=True) as cluster:
        dsn = cluster.create_database("bench")
        pg_run, pg_engine = _runner("postgres", dsn=dsn, durability="fast")
        memory_run, memory_engine = _runner("memory")
        try:
            times = interleaved({"postgres": functools.partial(pg_run, w3),
                                 "memory": functools.partial(memory_run, w3)}, rounds)
        finally:
            pg_engine.close()
            memory_engine.close()
    return [compare(f"W3 layered {len(w3) // 200}x200, postgres store 'fast' (loopback)",
                    len(w3), times["postgres"], times["memory"], "memory store",
                    target=">= 0.5x", min_ratio=0.5)]


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        print(f"{row.workload:60} {row.taskloom.fmt()} {row.unit} vs {row.baseline_name} "
              f"{row.ratio_text()} {row.status()}  {row.note}")
