"""Run the benchmark suite and print (and write) a Markdown table of ratios.

    python bench/run.py            # full run, writes bench/RESULTS.md
    python bench/run.py --quick    # small version (CI: reporting only)
    python bench/run.py --only core,queue

Every figure compares taskloom with a baseline measured in the same process: a warm-up, then
interleaved rounds that rotate which side goes first, with a garbage collection before each
timed side. Figures are medians [min..max] of the rounds; a ratio is the median of the
per-round ratios [their min..max], > 1 meaning taskloom is better. Floor B-cb (graphlib +
ThreadPoolExecutor, completions through a done-callback) is the reference of every engine row.
A target column says whether the median meets the goal ("met") or not ("not yet"); speed
never makes the run fail.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import Row

#: suite name -> module (in bench/, or a path to a contrib package's bench file)
SUITES = {
    "core": "bench_core",
    "queue": "bench_queue",
    "policies": "bench_policies",
    "scheduler": "bench_scheduler",
    "store": "bench_store",
    "otel": "bench_otel",
    "startup": "bench_startup",
    "mapping": "bench_mapping",
    "dask": str(ROOT / "contrib" / "taskloom-dask" / "bench_dask.py"),
    "postgres": str(ROOT / "contrib" / "taskloom-postgres" / "bench_postgres.py"),
}


def _load(spec: str):
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.exists():
            return None
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    if importlib.util.find_spec(spec) is None:
        return None
    return importlib.import_module(spec)


def machine() -> str:
    import multiprocessing

    mem = ""
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        pass
    return (f"{platform.system()} {platform.machine()}, {multiprocessing.cpu_count()} cores{mem}, "
            f"Python {platform.python_version()}")


def _load_average() -> str:
    """The 1-minute load average: other processes on a shared machine stretch every side."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def table(rows: list[Row]) -> str:
    lines = [
        "| workload | unit | taskloom | baseline | baseline figure | ratio [range] | target "
        "| status | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        digits = 0 if r.taskloom.median >= 100 else (1 if r.taskloom.median >= 10 else 3)
        base = r.baseline.fmt(digits) if r.baseline else "-"
        lines.append(f"| {r.workload} | {r.unit} | {r.taskloom.fmt(digits)} | "
                     f"{r.baseline_name or '-'} | {base} | {r.ratio_text()} | "
                     f"{r.target or '-'} | {r.status() or '-'} | {r.note} |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    checked = [r for r in rows if r.met is not None]
    missed = [r for r in checked if not r.met]
    lines = [f"Targets met: {len(checked) - len(missed)} of {len(checked)}."]
    if missed:
        lines.append("Not yet: " + "; ".join(
            f"{r.workload} vs {r.baseline_name or 'target'} ({r.target}): "
            f"{r.ratio_text() if r.min_ratio is not None else r.taskloom.fmt(1) + ' ' + r.unit}"
            for r in missed) + ".")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (CI)")
    parser.add_argument("--only", default="", help="comma-separated suites: " + ", ".join(SUITES))
    parser.add_argument("--out", default=None, help="Markdown output (default bench/RESULTS.md "
                        "for a full run, nothing for --quick)")
    args = parser.parse_args()
    wanted = [s for s in args.only.split(",") if s] or list(SUITES)
    all_rows: list[Row] = []
    failures = []
    started = time.perf_counter()
    load_before = _load_average()
    for name in wanted:
        module = _load(SUITES[name])
        if module is None:
            print(f"[{name}] not available, skipped", flush=True)
            continue
        print(f"[{name}] running...", flush=True)
        t0 = time.perf_counter()
        try:
            rows = module.rows(args.quick)
        except Exception:
            failures.append(name)
            traceback.print_exc()
            continue
        print(table(rows), flush=True)
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)
        all_rows += rows
    elapsed = time.perf_counter() - started
    header = (
        f"Measured on {machine()}; {'quick' if args.quick else 'full'} run of "
        f"{elapsed / 60:.1f} min (load average over 1 min: {load_before} at the start, "
        f"{_load_average()} at the end, on {os.cpu_count()} cores). Every row: taskloom and its "
        "baseline in the same process, a warm-up, then interleaved rounds rotating which "
        "side goes first, `gc.collect()` before each timed side. Figures: median [min..max] "
        "over the rounds; ratio: median of the per-round ratios [min..max], > 1 means "
        "taskloom is better. Status: the median against the target."
    )
    report = header + "\n\n" + table(all_rows) + "\n\n" + summary(all_rows) + "\n"
    print("\n" + report)
    out = args.out or (None if args.quick else str(HERE / "RESULTS.md"))
    if out:
        Path(out).write_text(report)
        print(f"written to {os.path.relpath(out)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
