"""The reference workloads W1-W4 and W6: graphs, the floors, and the runners."""

from __future__ import annotations

import graphlib
import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

Graph = dict[str, list[str]]


def noop() -> None:
    return None


def sleepy() -> None:
    time.sleep(0.01)


def fan_out(n: int = 10_000) -> Graph:
    """W1: independent tasks."""
    return {f"t{i}": [] for i in range(n)}


def chain(n: int = 2_000) -> Graph:
    """W2: each task depends on the previous one."""
    return {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(n)}


def layered(layers: int = 50, width: int = 200, deps: int = 3) -> Graph:
    """W3/W6: each task depends on ``deps`` tasks of the previous layer (Random(42))."""
    rnd = random.Random(42)
    g: Graph = {}
    for layer in range(layers):
        for i in range(width):
            g[f"l{layer}_{i}"] = (
                [f"l{layer - 1}_{j}" for j in rnd.sample(range(width), deps)] if layer else []
            )
    return g


def floor_a(graph: Graph, fn: Callable[[], object] = noop) -> None:
    """A plain loop calling the functions in topological order."""
    for _ in graphlib.TopologicalSorter(graph).static_order():
        fn()


def floor_b(graph: Graph, fn: Callable[[], object] = noop, workers: int = 2) -> None:
    """graphlib + ThreadPoolExecutor, releasing dependents as futures finish."""
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    with ThreadPoolExecutor(workers) as pool:
        pending: dict[object, str] = {}
        while ts.is_active():
            for name in ts.get_ready():
                pending[pool.submit(fn)] = name
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                fut.result()
                ts.done(pending.pop(fut))


def dask_threaded(graph: Graph, fn: Callable[[], object] = noop, workers: int = 2) -> None:
    import dask.threaded

    def call(*_deps: object) -> object:
        return fn()

    dsk = {name: (call, *deps) for name, deps in graph.items()}
    dask.threaded.get(dsk, list(graph), num_workers=workers)


def dask_available() -> bool:
    try:
        import dask.threaded  # noqa: F401
    except ImportError:
        return False
    return True


def taskloom_runner(workers: int = 2, **engine_options: object) -> Callable[..., None]:
    """A runner on one engine with the default plugins loaded (as a user gets them)."""
    from taskloom import Engine, Task

    engine = Engine(max_workers=workers, **engine_options)  # type: ignore[arg-type]

    def run(graph: Graph, fn: Callable[[], object] = noop) -> None:
        tasks = [Task(name, fn=fn, dependencies=deps) for name, deps in graph.items()]
        summary = engine.run(tasks)
        if not summary.ok:
            raise RuntimeError(f"benchmark run failed: {summary.counts}")

    return run
