"""The taskloom command as a real process: the example end to end, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ETL = ROOT / "examples" / "etl" / "taskloom.toml"
CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]


def test_example_runs_prints_progress_and_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [*CLI, "run", str(ETL), "--store", "none", "--set", f'tasks.report.config.output="{out}"'],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "run " in proc.stdout and "completed: 9 completed" in proc.stdout
    assert '"taskloom.task.name": "transform"' in proc.stdout  # the console trace
    assert "rejected: extract_east line 92" in proc.stderr  # the conditional step ran
    report = out.read_text()
    assert "360 rows" in report and "2 rows rejected" in report


def test_first_ctrl_c_waits_second_cancels(tmp_path: Path) -> None:
    (tmp_path / "slow_steps.py").write_text(textwrap.dedent("""
        import sys

        def slow(context):
            print("slow started", flush=True)
            context.token.wait(60)
            return "stopped" if context.cancelled else "finished"

        def after(slow):
            return slow
    """))
    config = tmp_path / "taskloom.toml"
    config.write_text(textwrap.dedent("""
        [tasks.slow]
        call = "slow_steps:slow"
        [tasks.after]
        call = "slow_steps:after"
        depends_on = ["slow"]
    """))
    proc = subprocess.Popen([*CLI, "run", str(config), "--store", "none", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "slow started" in line:
                break
        proc.send_signal(signal.SIGINT)
        for line in proc.stdout:
            lines.append(line)
            if "Interrupted" in line:
                break
        assert "waiting for 1 running task(s)" in lines[-1]
        assert proc.poll() is None  # still waiting for the running task
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Cancelling running tasks" in rest
    assert "after cancelled" in rest and "slow cancelled" in rest
