"""taskloom on Dask against Dask's own ``client.submit`` of the same graph, same cluster.

W1 (independent no-op tasks) and W3 (layered DAG, 3 deps per task from the previous layer,
``random.Random(42)``) on 2 worker processes x 1 thread; W4 (200 x ``time.sleep(0.01)``) on
50 Dask threads (2 processes x 25). Dask's side submits every task at once, passing the
futures of its dependencies, and gathers every result (taskloom returns every result too).
No-op bodies return None, which taskloom-dask never fetches; one more W1 row has every
task return 1, so that each result is fetched.

    python contrib/taskloom-dask/bench_dask.py [--quick]
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from common import Row, rate, wall  # noqa: E402
from workloads import Graph, fan_out, layered, noop, sleepy  # noqa: E402

import taskloom  # noqa: E402


@contextmanager
def cluster(n_workers: int, threads: int) -> Iterator[object]:
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as lc, Client(lc, set_as_default=False) as client:
        yield client


def _deps_taker(*_: object, **__: object) -> None:
    """The body of a task with dependencies, on both sides: takes their results, no work."""
    return None


def dask_own(client: object, graph: Graph, fn: Callable[[], object]) -> None:
    """The same graph with plain ``client.submit``: dependencies passed as futures."""
    futures: dict[str, object] = {}
    for name, deps in graph.items():
        if deps:
            futures[name] = client.submit(  # type: ignore[attr-defined]
                _deps_taker, *(futures[d] for d in deps), key=name + "-d", pure=False
            )
        else:
            futures[name] = client.submit(fn, pure=False)  # type: ignore[attr-defined]
    client.gather(list(futures.values()))  # type: ignore[attr-defined]


def one() -> int:
    """A no-op body that returns a value: its result has to be fetched from the worker."""
    return 1


def _tasks(graph: Graph, fn: Callable[[], object]) -> list[taskloom.Task]:
    return [
        taskloom.Task(name, dependencies=deps, fn=_deps_taker if deps else fn)
        for name, deps in graph.items()
    ]


def taskloom_on(engine: taskloom.Engine, graph: Graph, fn: Callable[[], object]) -> None:
    summary = engine.run(_tasks(graph, fn))
    if not summary.ok:
        raise RuntimeError(f"benchmark run failed: {summary.errors}")


def settle(client: object) -> None:
    """Wait (untimed) until the scheduler has forgotten every task of the previous side.

    Releasing finished tasks costs the scheduler and workers work after a run returns;
    without this pause one side's clean-up would be timed in the other side's run.
    """
    def count(dask_scheduler: object) -> int:
        return len(dask_scheduler.tasks)  # type: ignore[attr-defined]

    while client.run_on_scheduler(count):  # type: ignore[attr-defined]
        time.sleep(0.002)


def _pair(client: object, graph: Graph, fn: Callable[[], object], reps: int
          ) -> tuple[list[float], list[float]]:
    """Like ``common.paired`` (warm-up, then A B A B ...), settling the cluster before each."""
    engine = taskloom.Engine(executor="dask", executor_options={"client": client})

    def ours() -> None:
        taskloom_on(engine, graph, fn)

    def theirs() -> None:
        dask_own(client, graph, fn)

    ta: list[float] = []
    tb: list[float] = []
    for rep in range(reps + 1):
        for side, times in ((ours, ta), (theirs, tb)):
            settle(client)
            t0 = time.perf_counter()
            side()
            if rep:  # the first round is the warm-up
                times.append(time.perf_counter() - t0)
    return ta, tb


def rows(quick: bool) -> list[Row]:
    reps = 2 if quick else 5
    n = 150 if quick else 2_000
    layers, width = (3, 40) if quick else (10, 200)
    sleepers = 100 if quick else 200
    out: list[Row] = []
    with cluster(2, 1) as client:
        w1 = fan_out(n)
        tl, dk = _pair(client, w1, noop, reps)
        out.append(Row(f"W1 dask (N={n:,})", "tasks/s", rate(n, tl), rate(n, dk),
                       "Dask client.submit", target=">= 0.7x",
                       note="2 worker processes x 1 thread"))
        tl, dk = _pair(client, w1, one, reps)
        out.append(Row(f"W1 dask, each task returns 1 (N={n:,})", "tasks/s", rate(n, tl),
                       rate(n, dk), "Dask client.submit",
                       note="results fetched from the workers (None results are not)"))
        w3 = layered(layers, width)
        tl, dk = _pair(client, w3, noop, reps)
        out.append(Row(f"W3 dask ({layers}x{width})", "tasks/s", rate(len(w3), tl),
                       rate(len(w3), dk), "Dask client.submit", target=">= 0.7x",
                       note="2 worker processes x 1 thread"))
    with cluster(2, 25) as client:
        w4 = fan_out(sleepers)
        tl, dk = _pair(client, w4, sleepy, reps)
        out.append(Row(f"W4 dask ({sleepers} x sleep 10 ms)", "wall s", wall(tl), wall(dk),
                       "Dask client.submit", higher_is_better=False, target="within 1.5x",
                       note="50 Dask threads (2 processes x 25)"))
    return out


if __name__ == "__main__":
    for row in rows("--quick" in sys.argv):
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        digits = 0 if row.taskloom.median >= 100 else 3
        base = row.baseline.fmt(digits) if row.baseline else "-"
        print(f"{row.workload:32} {row.unit:8} taskloom {row.taskloom.fmt(digits):>28}  "
              f"dask {base:>28}  {ratio:>6}  target {row.target}")
