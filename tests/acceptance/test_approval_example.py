"""The approval example end to end: a live run waits, another process approves it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "approval"
CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]


def _waiting_run(db: Path, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never recorded its wait"
        if db.is_file():
            try:
                conn = sqlite3.connect(db, timeout=5)
                try:
                    rows = conn.execute("SELECT id FROM runs WHERE status = 'waiting'").fetchall()
                finally:
                    conn.close()
            except sqlite3.Error:  # the schema is being created
                rows = []
            if rows:
                return str(rows[0][0])
        time.sleep(0.01)


def test_the_example_fans_out_waits_and_publishes_once_approved(tmp_path):
    project = tmp_path / "approval"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("out", ".taskloom",
                                                                    "__pycache__"))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([*CLI, "run", "-v", "--param", "max_words=18"], cwd=project,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = _waiting_run(project / ".taskloom" / "taskloom.db", proc)
        sent = subprocess.run([*CLI, "signal", run_id, "approval", "--data",
                               '{"approved": true, "by": "ann"}'], cwd=project, env=env,
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    assert "✓ check[2] completed" in out and "✓ approve completed" in out
    assert sorted(p.name for p in (project / "out").iterdir()) == ["faq.md", "upgrade-guide.md"]
