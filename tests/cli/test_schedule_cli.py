"""``taskloom schedule``: a real daemon process stopped by SIGTERM; bad input exits 2."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom.app.cli import main

JOBS = '''
import pathlib

def hello():
    with open("out.txt", "a") as f:
        f.write("hello\\n")

def slow(context):
    with open("out.txt", "a") as f:
        f.write("slow-start\\n")
    cancelled = context.token.wait(0.5)
    with open("out.txt", "a") as f:
        f.write("slow-cancelled\\n" if cancelled else "slow-done\\n")
'''

CONFIG = '''
[tasks.hello]
call = "jobs:hello"

[tasks.slow]
call = "jobs:slow"

[[schedules]]
task = "hello"
at = "2020-01-01T00:00:00+00:00"

[[schedules]]
task = "slow"
at = "2020-01-01T00:00:00Z"

[[schedules]]
task = "hello"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
misfire_grace_time = 30
'''


def _project(tmp_path: Path, config: str = CONFIG) -> Path:
    (tmp_path / "jobs.py").write_text(JOBS)
    path = tmp_path / "taskloom.toml"
    path.write_text(textwrap.dedent(config))
    return path


def _lines(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return out, thread


def _until(lines: queue.Queue[str], predicate: object, seen: list[str]) -> None:
    while True:
        line = lines.get(timeout=20)
        seen.append(line)
        if callable(predicate) and predicate(seen):
            return


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
@pytest.mark.parametrize("how", ["wait", "--cancel-running", "on_stop"])
def test_daemon_fires_and_stops_on_sigterm(tmp_path: Path, how: str) -> None:
    # Running tasks are waited for, or cancelled by the flag or by the configuration.
    config = _project(tmp_path, ('[taskloom]\non_stop = "cancel"\n' if how == "on_stop"
                                 else "") + CONFIG)
    cancel = how != "wait"
    argv = [sys.executable, "-c", "from taskloom.app.cli import main; main()", "schedule",
            str(config), "--store", "none"]
    if how == "--cancel-running":
        argv.append("--cancel-running")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines, pump = _lines(proc)
        seen: list[str] = []
        _until(lines, lambda s: sum(" fired " in x for x in s) == 2, seen)
        # Both fires are logged with their due time; the cron job is listed with its next time.
        assert any("fired hello:at:0 (task hello) due 2020-01-01T00:00:00.000+00:00" in x
                   for x in seen)
        assert any(x.startswith("scheduled hello:cron:2") for x in seen)
        out = tmp_path / "out.txt"
        for _ in range(200):  # the slow task must have started before we stop
            if out.exists() and "slow-start" in out.read_text():
                break
            threading.Event().wait(0.01)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        pump.join(10)
        while not lines.empty():
            seen.append(lines.get())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 0, stderr
    text = "\n".join(seen)
    assert text.rstrip().endswith("stopped")
    assert ("SIGTERM: stopping, cancelling running tasks" if cancel else
            "SIGTERM: stopping, waiting for running tasks") in text
    written = (tmp_path / "out.txt").read_text().split()
    assert "hello" in written
    if cancel:
        # Cancelled at once: the daemon does not wait for the body to run out, and the fire's
        # run ends interrupted by the signal.
        assert "slow-done" not in written
        assert any(" FAILED " in x and "interrupted (SIGTERM)" in x for x in seen), text
    else:
        assert written[-1] == "slow-done"


def test_bad_cron_expression_exits_2_naming_it(tmp_path: Path) -> None:
    config = _project(tmp_path, '''
        [tasks.hello]
        call = "jobs:hello"

        [[schedules]]
        task = "hello"
        cron = "0 25 * * *"
    ''')
    result = CliRunner().invoke(main, ["schedule", str(config), "--store", "none"])
    assert result.exit_code == 2
    assert "'0 25 * * *'" in result.output and "hour" in result.output


def test_unknown_timezone_exits_2(tmp_path: Path) -> None:
    config = _project(tmp_path, '''
        [tasks.hello]
        call = "jobs:hello"

        [[schedules]]
        task = "hello"
        cron = "0 3 * * *"
        timezone = "Europe/Atlantis"
    ''')
    result = CliRunner().invoke(main, ["schedule", str(config), "--store", "none"])
    assert result.exit_code == 2
    assert "Europe/Atlantis" in result.output


def test_no_schedules_exits_2(tmp_path: Path) -> None:
    config = _project(tmp_path, '''
        [tasks.hello]
        call = "jobs:hello"
    ''')
    result = CliRunner().invoke(main, ["schedule", str(config), "--store", "none"])
    assert result.exit_code == 2
    assert "no schedules" in result.output


def test_bad_on_stop_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = _project(tmp_path, '''
        [taskloom]
        on_stop = "later"

        [tasks.hello]
        call = "jobs:hello"

        [[schedules]]
        task = "hello"
        interval = 60
    ''')
    result = CliRunner().invoke(main, ["schedule", str(config), "--store", "none"])
    assert result.exit_code == 2
    assert "taskloom.on_stop: must be one of wait, cancel, got 'later'" in result.output


def _daemon(tmp_path: Path, config: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", "from taskloom.app.cli import main; main()", "schedule",
            str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _stop(proc: subprocess.Popen[str], lines: queue.Queue[str], pump: threading.Thread,
          seen: list[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pump.join(10)
    while not lines.empty():
        seen.append(lines.get())


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_two_daemons_started_together_on_one_database_fire_each_due_time_once(
        tmp_path: Path) -> None:
    # Both use the default SQLite store beside the configuration: one schedule state.
    config = _project(tmp_path, '''
        [tasks.hello]
        call = "jobs:hello"

        [[schedules]]
        task = "hello"
        interval = 0.25
    ''')
    procs = [_daemon(tmp_path, config) for _ in range(2)]
    pumps = [_lines(p) for p in procs]
    seen: list[list[str]] = [[], []]
    try:
        fires = 0
        while fires < 10:  # about 2.5 s of fires between them
            for i, (lines, _) in enumerate(pumps):
                try:
                    line = lines.get(timeout=0.05)
                except queue.Empty:
                    continue
                seen[i].append(line)
                fires += " fired " in line
    finally:
        for proc, (lines, pump), got in zip(procs, pumps, seen, strict=True):
            _stop(proc, lines, pump, got)
    due = [line.split(" due ")[1].split(",")[0] for got in seen for line in got
           if " fired " in line]
    assert len(due) >= 10
    assert len(due) == len(set(due)), "a due time fired twice"
    # The due times are one grid (multiples of 0.25 s), with no run left out in between.
    from datetime import datetime

    stamps = sorted(datetime.fromisoformat(d).timestamp() for d in due)
    assert all(round(s * 4) == s * 4 for s in stamps)
    assert [round((b - a) * 4) for a, b in zip(stamps, stamps[1:])] == [1] * (len(stamps) - 1)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_daemon_shows_a_run_skipped_at_max_instances(tmp_path: Path) -> None:
    config = _project(tmp_path, '''
        [tasks.slow]
        call = "jobs:slow"

        [[schedules]]
        task = "slow"
        interval = 0.1
        max_instances = 1
    ''')
    proc = _daemon(tmp_path, config)
    lines, pump = _lines(proc)
    seen: list[str] = []
    try:
        _until(lines, lambda s: any("still going" in x for x in s), seen)
    finally:
        _stop(proc, lines, pump, seen)
    [skip, *_] = [x for x in seen if "still going" in x]
    assert " skipped slow:interval:0 (task slow) due " in skip
    assert skip.endswith(": 1 run(s) still going (max_instances 1)")


def test_dst_policy_and_nicknames_in_toml(tmp_path: Path) -> None:
    config = _project(tmp_path, '''
        [tasks.hello]
        call = "jobs:hello"

        [[schedules]]
        task = "hello"
        cron = "@hourly"
        timezone = "Europe/Berlin"
        ambiguous = "once"
        nonexistent = "shift"
    ''')
    from taskloom.app.config import load_config

    [entry] = load_config(config).schedules
    assert entry.options == {"expression": "@hourly", "timezone": "Europe/Berlin",
                             "ambiguous": "once", "nonexistent": "shift"}
    from taskloom_std.scheduling import CronTrigger

    trigger = CronTrigger(**entry.options)
    assert (trigger.ambiguous, trigger.nonexistent, trigger.wall_clock) == (
        "once", "shift", True)


@pytest.mark.parametrize("table,message", [
    ('cron = "0 3 * * *"\nambiguous = "twice"',
     "schedules[0].ambiguous: must be one of once, both, got 'twice'"),
    ('interval = 60\nnonexistent = "skip"',
     "schedules[0].nonexistent: a DST policy for cron schedules only"),
    ('cron = "0 3 * * *"\ntimezone = "Europe"', "schedules[0].timezone: unknown time zone 'Europe'"),
    (f'cron = "0 3 * * *"\ntimezone = "{"x" * 300}"', "schedules[0].timezone: unknown time zone"),
    ('cron = "@reboot"', "unknown nickname"),
    ("interval = 1e300", "schedules[0].interval: must be at most 3162240000 seconds"),
    ("at = 0001-01-01T00:00:00", "schedules[0].at: must be between the years 2 and 9998"),
])
def test_bad_schedule_values_exit_2_naming_the_key(tmp_path: Path, table: str,
                                                   message: str) -> None:
    config = _project(tmp_path, '[tasks.hello]\ncall = "jobs:hello"\n\n[[schedules]]\n'
                                'task = "hello"\n' + table + "\n")
    result = CliRunner().invoke(main, ["schedule", str(config), "--store", "none"])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_fire_log_prints_a_line_per_finished_fire_and_a_failure_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from taskloom import Engine, Task
    from taskloom.app.cli.schedule_cmd import FireLog

    engine = Engine(max_workers=1, store="none")
    engine.plugins.register(FireLog(), name="fire-log")

    def boom() -> None:
        raise ValueError("no data for today")

    for name, fn in (("good", lambda: 1), ("bad", boom)):
        run = engine.open_run(name=name, trigger="schedule")
        run.add([Task(name, fn=fn)])
        run.start()
        run.wait()
        run.close()
    engine.run([Task("not-scheduled", fn=lambda: 1 / 0)])  # not a fire: nothing printed
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert " completed good (run " in lines[0]
    assert " FAILED bad (run " in lines[1] and lines[1].endswith(
        "failed: bad: no data for today")


BUSY = '''
import os, time

def busy(context):
    with open("spans.txt", "a") as f:
        f.write(f"start {time.time()!r} {os.getpid()}\\n")
    context.token.wait(0.4)
    with open("spans.txt", "a") as f:
        f.write(f"end {time.time()!r} {os.getpid()}\\n")
'''


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_two_daemons_never_run_a_job_over_its_max_active_runs(tmp_path: Path) -> None:
    # Each daemon fires other due times of the job (the schedule state shares them out); the
    # run claims in the shared database keep their runs from overlapping.
    (tmp_path / "busyjobs.py").write_text(BUSY)
    config = _project(tmp_path, '''
        [tasks.busy]
        call = "busyjobs:busy"

        [[schedules]]
        task = "busy"
        interval = 0.2
        max_active_runs = 1
    ''')
    procs = [_daemon(tmp_path, config) for _ in range(2)]
    pumps = [_lines(p) for p in procs]
    seen: list[list[str]] = [[], []]
    try:
        done, skipped = [0, 0], 0
        # Until both daemons ran the job (on a loaded machine one may win many fires in a row)
        # and one skipped a fire for the other's run; bounded.
        deadline = time.monotonic() + 120
        while sum(done) < 4 or min(done) < 1 or not skipped:
            assert time.monotonic() < deadline, f"daemons ran {done}, skipped {skipped}"
            for i, (lines, _) in enumerate(pumps):
                try:
                    line = lines.get(timeout=0.05)
                except queue.Empty:
                    continue
                seen[i].append(line)
                done[i] += " completed busy:interval:0 " in line
                skipped += "still going across processes (max_active_runs 1)" in line
    finally:
        for proc, (lines, pump), got in zip(procs, pumps, seen, strict=True):
            _stop(proc, lines, pump, got)
    # Both daemons ran the job: the limit held across them, not just within one.
    spans = [line.split() for line in (tmp_path / "spans.txt").read_text().splitlines()]
    assert len({pid for _, _, pid in spans}) == 2
    events = sorted((float(t), kind) for kind, t, _ in spans)
    depth = 0
    for _, kind in events:
        depth += 1 if kind == "start" else -1
        assert depth <= 1, "two runs of the job overlapped"
    [line, *_] = [x for got in seen for x in got if "across processes" in x]
    assert " skipped busy:interval:0 (task busy) due " in line
    assert line.endswith(": 1 run(s) still going across processes (max_active_runs 1)")


def test_max_active_runs_in_a_schedule_entry(tmp_path: Path) -> None:
    from taskloom.app.config import load_config

    config = _project(tmp_path, '''
        [tasks.hello]
        call = "jobs:hello"

        [[schedules]]
        task = "hello"
        interval = 60
        max_active_runs = 2
    ''')
    [entry] = load_config(config).schedules
    assert entry.max_active_runs == 2
    path = _project(tmp_path, '[tasks.hello]\ncall = "jobs:hello"\n\n[[schedules]]\n'
                              'task = "hello"\ninterval = 60\nmax_active_runs = 0\n')
    result = CliRunner().invoke(main, ["schedule", str(path), "--store", "none"])
    assert result.exit_code == 2, result.output
    assert "schedules[0].max_active_runs: must be >= 1, got 0" in result.output
