"""`taskloom run` on PostgreSQL killed while a step waits for an approval: the run reads
``waiting``, `taskloom signal` from another process records the approval, and `taskloom
resume` continues with the `--set` overrides, the parameters and the store settings the run
started with, running nothing that completed. Real processes, a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

TASKLOOM = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def _log(text):
        with open(HERE / "ran.log", "a") as f:
            f.write(text + "\\n")

    def prepare(context):
        _log(f"prepare {context.config.get('tag', '-')} {context.params['day']}")
        return "draft"

    def publish(context, prepare, approve):
        _log(f"publish {context.config.get('tag', '-')} {context.params['day']} {prepare} "
             f"{approve['approved']}")
        return "published"
''')

CONFIG = textwrap.dedent('''
    [taskloom]
    store = "postgres"
    store_options = {{ dsn = "{dsn}" }}

    [params]
    day = {{ type = "date", default = "2026-01-01" }}

    [tasks.prepare]
    call = "pg_steps:prepare"

    [tasks.approve]
    wait_for = "approval"
    payload_schema = {{ approved = "bool" }}
    depends_on = ["prepare"]

    [tasks.publish]
    call = "pg_steps:publish"
    depends_on = ["prepare", "approve"]
''')


def _taskloom(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([*TASKLOOM, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _run_row(dsn: str) -> tuple[str, str, str | None] | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()[0]:
            return None
        row = conn.execute("SELECT id, status, overrides FROM runs").fetchone()
    return None if row is None else (row[0], row[1], row[2])


def test_killed_while_waiting_then_signalled_and_resumed_with_its_overrides(
        tmp_path, fresh_dsn):
    (tmp_path / "pg_steps.py").write_text(STEPS)
    flow = tmp_path / "taskloom.toml"
    flow.write_text(CONFIG.format(dsn=fresh_dsn))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1",
           "TASKLOOM_STORE_OPTIONS__FLUSH_INTERVAL": "0.05"}
    proc = subprocess.Popen(
        [*TASKLOOM, "run", "--param", "day=2026-12-01",
         "--set", 'tasks.prepare.config.tag="from-set"',
         "--set", 'tasks.publish.config.tag="from-set"',
         "--set", 'taskloom.store_options.durability="safe"'],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (row := _run_row(fresh_dsn)) is None or row[1] != "waiting":
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_id, _, overrides = row
    recorded = json.loads(overrides or "{}")
    assert recorded["tasks.publish.config.tag"] == "from-set"
    assert recorded["taskloom.store_options.durability"] == "safe"
    assert recorded["taskloom.store_options.flush_interval"] == 0.05  # from the environment
    assert recorded["params.day"] == {"type": "date", "default": "2026-12-01"}

    listed = _taskloom(tmp_path, "runs")
    assert listed.returncode == 0 and "waiting" in listed.stdout, listed
    refused = _taskloom(tmp_path, "signal", run_id, "approval", "--data",
                        '{"approved": "yes"}')
    assert refused.returncode == 2 and "'approved' must be bool" in refused.stderr + refused.stdout
    sent = _taskloom(tmp_path, "signal", run_id[:6], "approval", "--data", '{"approved": true}')
    assert sent.returncode == 0, sent
    assert "waiting for it: approve" in sent.stdout and "taskloom resume" in sent.stdout

    resumed = _taskloom(tmp_path, "resume", run_id, str(flow))
    assert resumed.returncode == 0, resumed
    assert f"run {run_id} completed" in resumed.stdout
    assert (tmp_path / "ran.log").read_text().splitlines() == [
        "prepare from-set 2026-12-01", "publish from-set 2026-12-01 draft True"]
    row = _run_row(fresh_dsn)
    assert row is not None and row[1] == "completed"
