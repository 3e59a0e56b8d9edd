"""``taskloom schedule`` on the ETL example with its cron entry set to every 2 seconds (six-field
cron, seconds first), in a real process: one run per fire, each computing its upstream
afresh (a row added to an input between fires shows in the next report), and ``taskloom runs
--json`` lists the fires."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "etl"
CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]
FIRES = 3


def _cli(cwd: Path, *args: str) -> str:
    done = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_schedule_runs_the_example_once_per_fire_with_fresh_upstream(tmp_path: Path) -> None:
    project = tmp_path / "etl"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".taskloom", "out"))
    config = project / "taskloom.toml"
    text, n = re.subn(r'^cron = "30 6 \* \* 1-5".*$', 'cron = "*/2 * * * * *"',
                      config.read_text(), flags=re.M)
    assert n == 1, "the example's [[schedules]] entry changed; update this test"
    config.write_text(text)
    proc = subprocess.Popen([*CLI, "schedule", "taskloom.toml"], cwd=project, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    completed: list[str] = []
    changed_at = None
    try:
        while len(completed) < FIRES:
            line = lines.get(timeout=30)
            assert " FAILED " not in line, line
            if " completed report:cron:0 (run " in line:
                completed.append(line)
                if changed_at is None:
                    # New data for the next fires: a fire that reused the first fire's
                    # upstream results would not see it.
                    with (project / "data" / "north.csv").open("a") as f:
                        f.write("2026-10-31,north,widget,1,4.50\n")
                    changed_at = time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    fired = [re.search(r"\(run (\w+)\)", line).group(1) for line in completed]  # type: ignore[union-attr]
    assert len(set(fired)) == FIRES  # one run per fire

    runs = json.loads(_cli(project, "runs", "--json", "--workflow", "report:cron:0"))
    by_id = {r["id"]: r for r in runs}
    assert set(fired) <= set(by_id)
    rows_seen = []
    for run_id in fired:
        record = by_id[run_id]
        assert (record["status"], record["trigger"]) == ("completed", "schedule")
        # The report and all seven upstream tasks ran in this fire's own run.
        assert record["counts"] == {"completed": 8}
        shown = json.loads(_cli(project, "show", run_id, "--json"))
        tasks = {t["name"]: t for t in shown["tasks"]}
        assert all(len(tasks[name]["attempts"]) == 1 for name in
                   ("extract_north", "validate", "aggregate", "report"))
        # The aggregate's result preview starts with its row count.
        rows_seen.append(int(re.match(r'\{"rows": (\d+),', tasks["aggregate"]["result"])
                             .group(1)))  # type: ignore[union-attr]
    assert changed_at is not None
    assert rows_seen == [360] + [361] * (FIRES - 1)
