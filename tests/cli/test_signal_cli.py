"""An approval that arrives after the waiting process was SIGKILLed, and durable timers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from approval_steps import STEPS
from click.testing import CliRunner

from taskloom import Engine, FakeClock, TaskState
from taskloom.api.signals import sleep
from taskloom.app.cli import main

CONFIG = textwrap.dedent('''
    [tasks.prepare]
    call = "sig_steps:prepare"

    [tasks.approve]
    wait_for = "approval"
    payload_schema = { approved = "bool", "note?" = "str" }
    depends_on = ["prepare"]

    [tasks.publish]
    call = "sig_steps:publish"
    depends_on = ["prepare", "approve"]
''')


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _status(db: Path) -> str | None:
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            rows = conn.execute("SELECT status FROM runs").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:  # the schema is being created by the other process
        return None
    return rows[0][0] if rows else None


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_approval_after_the_process_stopped_then_resume_runs_nothing_twice(tmp_path,
                                                                           monkeypatch, stop):
    (tmp_path / "sig_steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(CONFIG)
    db = tmp_path / ".taskloom" / "taskloom.db"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from taskloom.app.cli import main; main()", "run"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _status(db) != "waiting":  # the other process records the wait, then waits
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, stop)
        out, _ = proc.communicate(timeout=60)  # a Ctrl-C does not wait for the signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if stop == signal.SIGINT:
        assert proc.returncode == 130, out
        assert "'taskloom resume " in out
        assert _status(db) == "waiting"  # recorded as waiting, not only interrupted
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("sig_steps", None)
    listed = _invoke("runs")
    assert "waiting" in listed.output
    run_id = sqlite3.connect(db).execute("SELECT id FROM runs").fetchone()[0]

    refused = _invoke("signal", run_id, "approval", "--data", '{"approved": "yes"}')
    assert refused.exit_code == 2
    assert "payload refused: 'approved' must be bool" in refused.output
    sent = _invoke("signal", run_id[:6], "approval", "--data", '{"approved": true}')
    assert sent.exit_code == 0, sent.output
    assert "waiting for it: approve" in sent.output and "taskloom resume" in sent.output
    again = _invoke("signal", run_id, "approval", "--data", '{"approved": false}')
    assert again.exit_code == 2 and "already received signal 'approval'" in again.output

    resumed = _invoke("resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "ran.log").read_text().splitlines() == ["prepare",
                                                              "publish draft True"]
    assert f"run {run_id} completed" in resumed.output
    sys.modules.pop("sig_steps", None)


def test_a_durable_timer_goes_on_after_a_restart_until_the_same_time(tmp_path):
    path = str(tmp_path / "t.db")
    clock = FakeClock(start=1_700_000_000.0)
    engine = Engine(clock=clock, store="sqlite", store_options={"path": path})
    try:
        run = engine.open_run(run_id="nap")
        run.add([sleep("nap", 3600)])
        run.start()
        deadline = time.monotonic() + 30
        while clock.pending_timers() != 1:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        clock.advance(1000)
        run.interrupt("SIGTERM")  # the process stops with the step waiting
        run.cancel()
        run.wait(30)
        assert run.close().status == "interrupted"
        (wait,) = engine.store.waits("nap")
        assert wait["due"] == 1_700_003_600.0
    finally:
        engine.close()
    later = FakeClock(start=1_700_002_000.0)  # a new process, 2,000 s after the start
    engine = Engine(clock=later, store="sqlite", store_options={"path": path})
    try:
        run = engine.open_resumed_run("nap")
        run.add([sleep("nap", 3600)])
        run.start()
        deadline = time.monotonic() + 30
        while later.pending_timers() != 1:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        later.advance(1599)
        assert run.tasks["nap"].status is TaskState.RUNNING
        later.advance(1)
        assert run.wait(30)
        summary = run.close()
    finally:
        engine.close()
    assert summary.ok
    assert summary.results["nap"].timestamp() == 1_700_003_600.0
