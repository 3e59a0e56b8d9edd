"""Load: several ``taskloom schedule`` processes share one PostgreSQL database and a
configuration of many jobs, each due once; every job must run exactly once.

Each job is an ``at`` schedule; the due times are spread evenly over ``--spread`` seconds
from a start a few seconds after the schedulers are launched (so they are all up). Each run
appends its job and host process to a side file. Reported: doubled and missed fires (any is
a failure: exit status 1), how late the runs started after their due time (p50/p99/max),
the runs each scheduler made, the wall time from the first due time to the last run, and the
database server's CPU time over the load (postmaster and backends, from ``/proc``). Speed is
reported, never enforced.

    python contrib/taskloom-postgres/bench_schedulers.py [--schedulers 4] [--jobs 1000]
    python contrib/taskloom-postgres/bench_schedulers.py --interval 1 --duration 60

``--interval``: every job fires every INTERVAL seconds for ``--duration`` seconds (the
issue's "4 schedulers x 1,000 one-second interval jobs for 60 s"). A fire is one (job, due
time); the window's fires are those due from the first whole second after every scheduler is
up to the last whole second of ``--duration``; the schedulers then go on for ``--drain``
seconds (default 10) so that late fires of the window still run. **Missed**: a fire of the
window whose run never wrote its line by the end of the drain (``missed_never_claimed``: of
those, the ones no scheduler had even claimed; ``skipped_by_misfire_policy``: fires a
scheduler skipped as later than their grace time, which are reported, not lost).
**Doubled**: runs of a job beyond the fires claimed for it. Lateness: a run's start minus its
fire's due time (a job's k-th run is its k-th claimed fire). The server's and the
schedulers' CPU seconds over the window are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

STEPS = '''
import os
import time
from pathlib import Path

LOG = Path(__file__).resolve().parent / "side.log"


def tick(context):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{context.task.name} {os.getpid()} {time.time()!r}\\n".encode())
    finally:
        os.close(fd)
'''


def _config(jobs: int, start: float, spread: float, interval: float | None = None) -> str:
    """``jobs`` jobs due once each over ``spread`` seconds from ``start``; with ``interval``,
    every ``interval`` seconds instead (on the whole-second grid)."""
    from datetime import datetime, timezone

    out = ['[taskloom]\nstore = "postgres"\n']
    for i in range(jobs):
        out.append(f'[tasks.j{i}]\ncall = "steps:tick"\n')
    for i in range(jobs):
        if interval is not None:
            out.append(f'[[schedules]]\nid = "j{i}"\ntask = "j{i}"\ninterval = {interval}\n'
                       "misfire_grace_time = 60\ncoalesce = false\n")
            continue
        due = datetime.fromtimestamp(start + spread * i / jobs, timezone.utc)
        out.append(f'[[schedules]]\nid = "j{i}"\ntask = "j{i}"\nat = "{due.isoformat()}"\n'
                   "misfire_grace_time = 60\n")
    return "\n".join(out)


def _server_cpu(root: Path) -> float:
    """CPU seconds of the server: the postmaster and its live children."""
    import psutil

    pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _cpu(pids: list[int]) -> float:
    """CPU seconds of the given processes (the schedulers)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run(schedulers: int = 4, jobs: int = 1000, spread: float = 10.0,
        lead: float = 8.0, timeout: float = 300.0, fsync: bool = True) -> dict[str, Any]:
    """The load against a new throwaway server (``fsync`` on, as a real server runs); the
    report as a dictionary."""
    import psycopg

    from taskloom_postgres.cluster import Cluster

    cluster = Cluster(fsync=fsync)
    cluster.start()
    folder = Path(tempfile.mkdtemp(prefix="taskloom-load-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        assert cluster.root is not None
        dsn = cluster.create_database("load")
        (folder / "steps.py").write_text(STEPS)
        start = time.time() + lead
        (folder / "taskloom.toml").write_text(_config(jobs, start, spread))
        env = {**os.environ, "PYTHONPATH": str(folder), "TASKLOOM_STORE_OPTIONS__DSN": dsn}
        cpu_before = _server_cpu(cluster.root)
        launched = time.monotonic()
        for i in range(schedulers):
            # Their output goes to files: a full pipe would stop a scheduler mid-line.
            with open(folder / f"out{i}.txt", "w") as out, \
                    open(folder / f"err{i}.txt", "w") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", "from taskloom.app.cli import main; main()",
                     "schedule", "taskloom.toml"], cwd=folder, env=env, text=True,
                    stdout=out, stderr=err))
        side = folder / "side.log"
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:  # bounded: the load's own timeout
            seen = len(side.read_text().splitlines()) if side.exists() else 0
            if seen >= jobs and time.time() > start + spread + 1:
                break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.2)
        cpu_after = _server_cpu(cluster.root)
        up = time.monotonic() - launched
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
        errors = [(folder / f"err{i}.txt").read_text()[-500:]
                  for i, proc in enumerate(procs) if proc.returncode]
        lines = [line.split() for line in side.read_text().splitlines()] if side.exists() \
            else []
        with psycopg.connect(dsn) as conn:
            claims = conn.execute("SELECT count(*) FROM schedule_claims").fetchone()[0]
            runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'completed'"
                                ).fetchone()[0]
        per_job = Counter(name for name, _, _ in lines)
        late = sorted(float(t) - (start + spread * int(name[1:]) / jobs)
                      for name, _, t in lines)
        report = {
            "schedulers": schedulers, "jobs": jobs, "spread_s": spread,
            "executions": len(lines),
            "doubled": sum(n - 1 for n in per_job.values() if n > 1),
            "missed": jobs - len(per_job),
            "claims": claims, "completed_runs": runs,
            "runs_per_scheduler": sorted(Counter(pid for _, pid, _ in lines).values()),
            "late_p50_s": round(statistics.median(late), 3) if late else None,
            "late_p99_s": round(late[int(len(late) * 0.99) - 1], 3) if late else None,
            "late_max_s": round(late[-1], 3) if late else None,
            "last_run_after_first_due_s": round(max(float(t) for *_, t in lines) - start, 2)
            if lines else None,
            "schedulers_up_s": round(up, 1),
            "server_cpu_s": round(cpu_after - cpu_before, 2),
            "exit_codes": [p.returncode for p in procs],
            "errors": errors,
        }
        return report
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cluster.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def run_interval(schedulers: int = 4, jobs: int = 1000, duration: float = 60.0,
                 interval: float = 1.0, fsync: bool = True,
                 drain: float = 10.0) -> dict[str, Any]:
    """``jobs`` jobs every ``interval`` seconds for ``duration`` seconds once every scheduler
    is up; the report as a dictionary (fires due in the window that were not claimed are
    missed; executions beyond the claims are doubled)."""
    import math

    import psycopg

    from taskloom_postgres.cluster import Cluster

    cluster = Cluster(fsync=fsync)
    cluster.start()
    folder = Path(tempfile.mkdtemp(prefix="taskloom-load-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        assert cluster.root is not None
        dsn = cluster.create_database("load")
        (folder / "steps.py").write_text(STEPS)
        (folder / "taskloom.toml").write_text(_config(jobs, 0.0, 0.0, interval))
        env = {**os.environ, "PYTHONPATH": str(folder), "TASKLOOM_STORE_OPTIONS__DSN": dsn}
        for i in range(schedulers):
            with open(folder / f"out{i}.txt", "w") as out, \
                    open(folder / f"err{i}.txt", "w") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", "from taskloom.app.cli import main; main()",
                     "schedule", "taskloom.toml"], cwd=folder, env=env, text=True,
                    stdout=out, stderr=err))

        def scheduled(i: int) -> int:
            text = (folder / f"out{i}.txt").read_text()
            return sum(1 for line in text.splitlines() if line.startswith("scheduled"))

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(
                scheduled(i) >= jobs for i in range(schedulers)):
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.2)
        up = time.time()
        cpu_before = _server_cpu(cluster.root)
        sched_before = _cpu([p.pid for p in procs])
        time.sleep(duration)
        cpu_after = _server_cpu(cluster.root)
        sched_after = _cpu([p.pid for p in procs])
        stop = time.time()
        time.sleep(drain)  # late fires of the window still run; later fires are not counted
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=300)
        side = folder / "side.log"
        lines = [line.split() for line in side.read_text().splitlines()] if side.exists() \
            else []
        with psycopg.connect(dsn) as conn:
            claims = conn.execute("SELECT job_id, fire_time FROM schedule_claims").fetchall()
        # A run's line is counted once its fire is matched; claims of fires due after the
        # window (made while draining) match runs too, so every claim takes part.
        first, last = math.ceil(up) + 1, math.floor(stop) - 1
        due = [first + k * interval for k in range(int((last - first) / interval) + 1)]
        claimed: dict[str, list[float]] = {}
        for job, fire in claims:
            claimed.setdefault(job, []).append(float(fire))
        ran: dict[str, list[float]] = {}
        for name, _, t in lines:
            ran.setdefault(name, []).append(float(t))
        # A job's runs start in the order of their claimed fire times: the k-th run is the
        # k-th claimed fire. A fire counts as executed when its run wrote its line.
        executed: set[tuple[str, float]] = set()
        late: list[float] = []
        doubled = 0
        for job, times in ran.items():
            fires = sorted(claimed.get(job, []))
            doubled += max(0, len(times) - len(fires))
            for fire, t in zip(fires, sorted(times), strict=False):
                executed.add((job, fire))
                if first <= fire <= last:  # the window's fires only
                    late.append(t - fire)
        late.sort()
        skipped = 0
        for i in range(schedulers):
            skipped += sum(1 for line in (folder / f"out{i}.txt").read_text().splitlines()
                           if " skipped " in line)
        in_window = [(f"j{i}", t) for i in range(jobs) for t in due]
        missed = sum(1 for fire in in_window if fire not in executed)
        unclaimed = sum(1 for job, t in in_window if t not in set(claimed.get(job, ())))
        return {
            "schedulers": schedulers, "jobs": jobs, "interval_s": interval,
            "window_s": round(stop - up, 1), "fires_due_in_window": len(in_window),
            "claims": len(claims), "executions": len(lines),
            "window_fires_executed": len(in_window) - missed,
            "window_fires_executed_per_s": round((len(in_window) - missed) / (stop - up), 1),
            "missed": missed, "missed_never_claimed": unclaimed,
            "skipped_by_misfire_policy": skipped, "doubled": doubled,
            "claimed_not_run_at_stop": len(claims) - len(lines), "drain_s": drain,
            "late_p50_s": round(statistics.median(late), 3) if late else None,
            "late_p99_s": round(late[int(len(late) * 0.99) - 1], 3) if late else None,
            "late_max_s": round(late[-1], 3) if late else None,
            "server_cpu_s": round(cpu_after - cpu_before, 2),
            "server_cpu_share": round((cpu_after - cpu_before) / (stop - up), 2),
            "schedulers_cpu_s": round(sched_after - sched_before, 2),
            "exit_codes": [p.returncode for p in procs],
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        cluster.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedulers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=10.0,
                        help="seconds over which the jobs are due")
    parser.add_argument("--interval", type=float, default=None,
                        help="every job fires every INTERVAL seconds instead of once")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="with --interval: seconds of load once every scheduler is up")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="with --interval: seconds the schedulers go on after the window"
                        " so that its late fires still run")
    args = parser.parse_args()
    if args.interval is not None:
        report = run_interval(args.schedulers, args.jobs, args.duration, args.interval,
                              drain=args.drain)
    else:
        report = run(args.schedulers, args.jobs, args.spread)
    print(json.dumps(report, indent=2))
    return 0 if report["doubled"] == 0 and report["missed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
