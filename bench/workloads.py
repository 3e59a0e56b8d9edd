"""The reference workloads W1-W4 and W6: graphs, the floors, and the runners.

Every runner takes the graph dict and builds its own task objects inside its timed call.
The reference floor is B-cb, the smallest correct threaded DAG runner; B-wait and the plain
loop A are context.
"""

from __future__ import annotations

import graphlib
import queue
import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

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


def floor_b_cb(graph: Graph, fn: Callable[[], object] = noop, workers: int = 2) -> None:
    """B-cb: graphlib + ThreadPoolExecutor; completions come back through a done-callback
    into a SimpleQueue, and each releases its dependents."""
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    done: queue.SimpleQueue[tuple[str, Future[object]]] = queue.SimpleQueue()
    results: dict[str, object] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while ts.is_active():
            for node in ts.get_ready():
                pool.submit(fn).add_done_callback(lambda f, n=node: done.put((n, f)))
            node, f = done.get()
            results[node] = f.result()
            ts.done(node)


def floor_b_wait(graph: Graph, fn: Callable[[], object] = noop, workers: int = 2) -> None:
    """B-wait: graphlib + ThreadPoolExecutor, waiting with ``wait(FIRST_COMPLETED)``."""
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    with ThreadPoolExecutor(workers) as pool:
        pending: dict[Future[object], str] = {}
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


def manager_runner(workers: int = 2, **engine_options: object) -> Callable[..., None]:
    """The ``TaskManager`` path on one engine: a manager per call, ``create_task`` for every
    node, ``execute_workflow``, then ``shutdown`` (which closes the run, as ``Engine.run``
    does)."""
    from taskloom import Engine, TaskManager

    engine = Engine(max_workers=workers, **engine_options)  # type: ignore[arg-type]

    def run(graph: Graph, fn: Callable[[], object] = noop) -> None:
        with TaskManager(engine=engine) as manager:
            create = manager.create_task
            tasks = [create(name, fn=fn, dependencies=deps) for name, deps in graph.items()]
            results = manager.execute_workflow(tasks)
        if len(results) != len(tasks):
            raise RuntimeError(f"benchmark run failed: {len(results)} of {len(tasks)} completed")

    return run
