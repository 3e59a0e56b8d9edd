"""Kill a real workflow process mid-run, resume it, and count every task's executions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import crash_workflow
import pytest

from taskloom import Engine

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def _executions(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _run_until_gate_then_kill(db: Path, log: Path, run_id: str) -> None:
    env = {**os.environ, "TASKLOOM_CRASH_BLOCK": "stdout", "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_workflow.py"), str(db), str(log), run_id],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "gate"  # blocks until the task is inside
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def test_killed_run_resumes_every_task_exactly_once_but_the_running_ones(tmp_path):
    db, log = tmp_path / "taskloom.db", tmp_path / "executions.log"
    _run_until_gate_then_kill(db, log, "crash-1")
    before = _executions(log)

    engine = Engine(max_workers=2, store="sqlite", store_options={"path": str(db)})
    try:
        assert engine.store.run("crash-1").status == "interrupted"
        recorded = {
            name: result
            for name, (state, stored, result, _, _) in engine.store.outcomes("crash-1").items()
            if state == "completed" and stored
        }
        assert recorded and "gate" not in recorded
        summary = engine.resume("crash-1", crash_workflow.tasks(str(log)))
    finally:
        engine.close()

    names = set(crash_workflow.graph())
    assert summary.ok and summary.counts == {"completed": len(names)}
    after = _executions(log)
    assert set(after) == names
    # Completed before the kill: never executed again, and the stored result is the one used.
    for name, result in recorded.items():
        assert after[name] == 1, name
        assert summary.results[name] == result
    # Running at the kill (executed but not recorded): at most once more. Only the two
    # workers' tasks can be in that state, and gate certainly was.
    again = {name for name, n in after.items() if n > 1}
    assert all(after[name] == 2 and before[name] == 1 for name in again)
    assert "gate" in again and len(again) <= 2
    assert again.isdisjoint(recorded)
    # Results flowed along the edges: every task's n counts its upstream paths plus one.
    assert summary.results["l0_0"] == {"task": "l0_0", "n": 1}
    assert summary.results["gate"]["n"] == summary.results["l1_0"]["n"] + 1


def test_resuming_again_after_completion_changes_nothing(tmp_path):
    db, log = tmp_path / "taskloom.db", tmp_path / "executions.log"
    _run_until_gate_then_kill(db, log, "crash-2")
    engine = Engine(max_workers=2, store="sqlite", store_options={"path": str(db)})
    try:
        first = engine.resume("crash-2", crash_workflow.tasks(str(log)))
        count = sum(_executions(log).values())
        second = engine.resume("crash-2", crash_workflow.tasks(str(log)))
        third = engine.run(crash_workflow.tasks(str(log)), run_id="crash-2")
    finally:
        engine.close()
    assert first.ok and second.ok and third.ok
    assert second.results == first.results == third.results
    assert sum(_executions(log).values()) == count
