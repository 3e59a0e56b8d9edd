"""W1-W4 and W6: ``Engine.run`` and the ``TaskManager`` path against floor B-cb, in one process.

Every workload runs all its sides in the same interleaved rounds (``common.interleaved``):
taskloom, B-cb (the reference), B-wait, the plain loop A and, when installed, dask.threaded.
Peak RSS on W6 is read in fresh processes (a process's high-water mark is its whole life);
W6's speed ratio comes from the rounds in this process.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import Row, Stat, compare, interleaved, per_round
from workloads import (
    Graph,
    chain,
    dask_available,
    dask_threaded,
    fan_out,
    floor_a,
    floor_b_cb,
    floor_b_wait,
    layered,
    manager_runner,
    noop,
    sleepy,
    taskloom_runner,
)

HERE = Path(__file__).resolve().parent
ENGINE = "Engine.run"
BCB = "B-cb"


def _throughput(wid: str, label: str, graph: Graph, target: float, rounds: int,
                dask: bool = True) -> list[Row]:
    """Engine.run against B-cb (the target), B-wait, A and dask.threaded, same rounds."""
    run = taskloom_runner(workers=2)
    sides: dict[str, Callable[[], object]] = {
        ENGINE: functools.partial(run, graph),
        BCB: functools.partial(floor_b_cb, graph),
        "B-wait": functools.partial(floor_b_wait, graph),
        "floor A (plain loop)": functools.partial(floor_a, graph),
    }
    if dask and dask_available():
        sides["dask.threaded"] = functools.partial(dask_threaded, graph)
    times = interleaved(sides, rounds)
    n = len(graph)
    name = f"{wid} {label}, {ENGINE}"
    rows = [compare(name, n, times[ENGINE], times[BCB], BCB, target=f">= {target:g}x",
                    min_ratio=target)]
    rows += [compare(name, n, times[ENGINE], times[other], other)
             for other in list(sides)[2:]]
    return rows


def _manager(wid: str, label: str, graph: Graph, rounds: int) -> list[Row]:
    """The TaskManager path (create_task + execute_workflow) against Engine.run and B-cb."""
    manager, engine = manager_runner(workers=2), taskloom_runner(workers=2)
    times = interleaved({
        "manager": functools.partial(manager, graph),
        ENGINE: functools.partial(engine, graph),
        BCB: functools.partial(floor_b_cb, graph),
    }, rounds)
    n = len(graph)
    name = f"{wid} {label}, TaskManager path"
    return [
        compare(name, n, times["manager"], times[ENGINE], ENGINE, target=">= 0.9x",
                min_ratio=0.9),
        compare(name, n, times["manager"], times[BCB], BCB),
    ]


def _w4(rounds: int, n: int = 200, workers: int = 50) -> list[Row]:
    graph = fan_out(n)
    run = taskloom_runner(workers=workers)
    times = interleaved({
        ENGINE: functools.partial(run, graph, sleepy),
        BCB: functools.partial(floor_b_cb, graph, sleepy, workers),
        "B-wait": functools.partial(floor_b_wait, graph, sleepy, workers),
    }, rounds)
    name = f"W4 sleep-bound ({n} x 10 ms, {workers} threads), {ENGINE}"
    return [
        compare(name, None, times[ENGINE], times[BCB], BCB,
                target="within 1.05x of B-cb's wall", min_ratio=1 / 1.05),
        compare(name, None, times[ENGINE], times["B-wait"], "B-wait"),
    ]


def _peak_rss_mb() -> float:
    """This process's peak resident memory. ru_maxrss survives exec, so a child forked from a
    big benchmark process would report its parent's peak; VmHWM belongs to this image only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_child(side: str, layers: int, width: int) -> None:
    """One W6 run by ``side`` in this fresh process; prints its peak RSS (MB) as JSON."""
    graph = layered(layers, width)
    if side == "taskloom":
        taskloom_runner(workers=2)(graph)
    else:
        floor_b_cb(graph, noop)
    print(json.dumps({"rss_mb": _peak_rss_mb()}))


def _peak_rss(layers: int, width: int, runs: int) -> dict[str, list[float]]:
    """Peak RSS of one W6 run in fresh processes, taskloom and B-cb alternating."""
    out: dict[str, list[float]] = {"taskloom": [], BCB: []}
    order = ["taskloom", BCB]
    for r in range(runs):
        for side in order[r % 2:] + order[:r % 2]:
            child = subprocess.run(
                [sys.executable, str(HERE / "bench_core.py"), "--rss-child", side,
                 str(layers), str(width)],
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": str(HERE)},
            )
            out[side].append(json.loads(child.stdout.strip().splitlines()[-1])["rss_mb"])
    return out


def _w6(quick: bool, rounds: int) -> list[Row]:
    layers, width = (20, 1000) if quick else (100, 1000)
    graph = layered(layers, width)
    run = taskloom_runner(workers=2)
    times = interleaved({
        ENGINE: functools.partial(run, graph),
        BCB: functools.partial(floor_b_cb, graph),
    }, rounds)
    del graph
    rss = _peak_rss(layers, width, 1 if quick else 3)
    n = layers * width
    name = f"W6 scale ({layers} x {width:,} = {n:,} tasks), {ENGINE}"
    return [
        compare(name, n, times[ENGINE], times[BCB], BCB, target=">= 1.5x", min_ratio=1.5),
        Row(name, "peak RSS MB", Stat.of(rss["taskloom"]), Stat.of(rss[BCB]), BCB,
            higher_is_better=False, ratios=per_round(rss["taskloom"], rss[BCB]),
            target="< 200 MB", max_value=200,
            note="VmHWM of one run in a fresh process each, the graph dict included"),
    ]


def rows(quick: bool) -> list[Row]:
    rounds = 3 if quick else 11
    scale = 5 if quick else 1
    out: list[Row] = []
    w1, w2, w3 = fan_out(10_000 // scale), chain(2_000 // scale), layered(50 // scale, 200)
    out += _throughput("W1", f"fan-out {len(w1):,}", w1, 3.0, rounds)
    out += _throughput("W2", f"chain {len(w2):,}", w2, 8.0, rounds)
    out += _throughput("W3", f"layered {len(w3) // 200}x200", w3, 1.5, rounds)
    out += _w4(rounds)
    out += _w6(quick, rounds if quick else 5)
    out += _manager("W1", f"fan-out {len(w1):,}", w1, rounds)
    out += _manager("W3", f"layered {len(w3) // 200}x200", w3, rounds)
    return out


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--rss-child":
    _rss_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
elif __name__ == "__main__":
    t0 = time.perf_counter()
    for row in rows("--quick" in sys.argv):
        print(f"{row.workload} vs {row.baseline_name}: {row.ratio_text()} {row.status()}")
    print(f"{time.perf_counter() - t0:.0f} s")
