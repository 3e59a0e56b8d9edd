"""W1-W4 and W6: taskloom's engine against the floors (and dask.threaded) in one run."""

from __future__ import annotations

import functools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import Row, Stat, measure, paired, rate, wall
from workloads import (
    chain,
    dask_available,
    dask_threaded,
    fan_out,
    floor_a,
    floor_b,
    layered,
    sleepy,
    taskloom_runner,
)

HERE = Path(__file__).resolve().parent


def _throughput(wid: str, label: str, graph: dict, target: str, reps: int) -> list[Row]:
    run = taskloom_runner(workers=2)
    n = len(graph)
    t_tl, t_b = paired(functools.partial(run, graph), functools.partial(floor_b, graph), reps)
    rows = [Row(f"{wid} {label}", "tasks/s", rate(n, t_tl), rate(n, t_b), "floor B",
                target=target)]
    t_a = measure(functools.partial(floor_a, graph), reps)
    rows.append(Row(f"{wid} {label}", "tasks/s", rate(n, t_tl), rate(n, t_a), "floor A"))
    if dask_available():
        t_tl2, t_d = paired(functools.partial(run, graph), functools.partial(dask_threaded, graph),
                            reps)
        rows.append(Row(f"{wid} {label}", "tasks/s", rate(n, t_tl2), rate(n, t_d),
                        "dask.threaded"))
    return rows


def _w4(reps: int, n: int) -> list[Row]:
    graph = fan_out(n)
    run = taskloom_runner(workers=50)
    t_tl, t_b = paired(functools.partial(run, graph, sleepy),
                       functools.partial(floor_b, graph, sleepy, 50), reps)
    return [Row("W4 sleep-bound (200 x 10 ms, 50 threads)", "wall s", wall(t_tl), wall(t_b),
                "floor B", higher_is_better=False, target="within 1.2x")]


def _w6_child(layers: int, width: int) -> None:
    """Run W6 once in this (fresh) process and print its rate and peak RSS as JSON."""
    graph = layered(layers, width)
    run = taskloom_runner(workers=2)
    run(layered(5, 200))  # warm-up on a small graph
    t0 = time.perf_counter()
    run(graph)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rate": len(graph) / seconds, "rss_mb": _peak_rss_mb()}))


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


def _w6(quick: bool, w3_rate: float) -> list[Row]:
    layers, width = (20, 1000) if quick else (100, 1000)
    runs = []
    for _ in range(1 if quick else 3):
        out = subprocess.run(
            [sys.executable, str(HERE / "bench_core.py"), "--w6-child", str(layers), str(width)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(HERE)},
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rates = sorted(r["rate"] for r in runs)
    rss = sorted(r["rss_mb"] for r in runs)
    mid = len(runs) // 2
    n = layers * width
    return [
        Row(f"W6 scale ({n:,} tasks)", "tasks/s", Stat(rates[mid], rates[0], rates[-1]),
            Stat(w3_rate, w3_rate, w3_rate), "taskloom W3", target=">= 0.5x"),
        Row(f"W6 scale ({n:,} tasks)", "peak RSS MB", Stat(rss[mid], rss[0], rss[-1]),
            higher_is_better=False, target="< 250 MB"),
    ]


def _startup(reps: int) -> list[Row]:
    def timed(args: list[str]) -> list[float]:
        out = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            out.append(time.perf_counter() - t0)
        return [x * 1000 for x in out[1:]]

    py = sys.executable
    base = timed([py, "-c", "pass"])
    imp = timed([py, "-c", "import taskloom"])
    note = f"whole process; a bare interpreter takes {wall(base).median:.0f} ms"
    rows = [Row("python -c 'import taskloom'", "ms", wall(imp), higher_is_better=False,
                target="< 100 ms", note=note)]
    exe = Path(py).with_name("taskloom")
    if exe.exists():
        ver = timed([str(exe), "--version"])
        rows.append(Row("taskloom --version", "ms", wall(ver), higher_is_better=False,
                        target="< 250 ms", note=note))
    return rows


def rows(quick: bool) -> list[Row]:
    reps = 3 if quick else 5
    scale = 5 if quick else 1
    out: list[Row] = []
    out += _throughput("W1", "fan-out", fan_out(10_000 // scale), ">= 0.8x", reps)
    out += _throughput("W2", "chain", chain(2_000 // scale), ">= 2.0x", reps)
    w3 = _throughput("W3", "layered 50x200", layered(50 // scale, 200), ">= 0.8x", reps)
    out += w3
    out += _w4(reps, 200)
    out += _w6(quick, w3[0].taskloom.median)
    out += _startup(reps)
    return out


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--w6-child":
    _w6_child(int(sys.argv[2]), int(sys.argv[3]))
