"""`taskloom run` under max_active_runs, racing `taskloom resume`s, and a killed run resumed
with the overrides it started with: real processes, a real SQLite file. The bodies
(claim_bodies.py) write their start and end times to a side file."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TASKLOOM = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="named pipes, SIGKILL")


def _workflow(tmp_path: Path, settings: str = "") -> Path:
    """Task ``a`` after ``pre``: with durability safe, ``pre``'s committed result means the
    run is recorded before ``a`` starts."""
    log = json.dumps(str(tmp_path / "side.log"))
    path = tmp_path / "flow.toml"
    path.write_text(
        f"[taskloom]\n{settings}\n"
        f'[tasks.pre]\ncall = "claim_bodies:body"\nconfig = {{ log = {log} }}\n'
        f'[tasks.a]\ncall = "claim_bodies:body"\ndepends_on = ["pre"]\n'
        f"config = {{ log = {log} }}\n"
    )
    return path


def _gate(tmp_path: Path, name: str) -> Path:
    gate = tmp_path / name
    gate.mkdir()
    os.mkfifo(gate / "in")
    os.mkfifo(gate / "out")
    return gate


def _taskloom(*args: str, **extra_env: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE), **extra_env}
    return subprocess.Popen([*TASKLOOM, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _inside(gate: Path) -> None:
    with open(gate / "out") as out:  # blocks until the body opens it
        assert out.readline().strip() == "inside"


def _go(gate: Path) -> None:
    with open(gate / "in", "w") as go:
        go.write("go\n")


def _waiting(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting" in line, line
    return line


def _done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def _entries(tmp_path: Path, task: str = "a") -> list[list[str]]:
    lines = (tmp_path / "side.log").read_text().splitlines()
    return [e for e in (line.split() for line in lines) if e[4] == task]


def _db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / ".taskloom" / "taskloom.db")


def test_two_runs_with_max_active_runs_one_never_overlap(tmp_path):
    flow, gate = _workflow(tmp_path, "max_active_runs = 1"), _gate(tmp_path, "g")
    first = _taskloom("run", str(flow), "--set", f"tasks.a.config.gate={json.dumps(str(gate))}")
    _inside(gate)
    second = _taskloom("run", str(flow))
    line = _waiting(second)
    assert f"workflow 'flow' is at max_active_runs = 1: runs in {first.pid}@" in line
    _go(gate)
    assert _done(first)[0] == 0
    assert _done(second)[0] == 0
    entries = _entries(tmp_path)
    assert [e[0] for e in entries] == ["start", "end", "start", "end"]
    assert float(entries[1][1]) <= float(entries[2][1])
    assert [int(e[2]) for e in entries] == [first.pid, first.pid, second.pid, second.pid]


def test_a_run_over_the_limit_is_refused_with_exit_2(tmp_path):
    flow, gate = _workflow(tmp_path, "max_active_runs = 1"), _gate(tmp_path, "g")
    first = _taskloom("run", str(flow), "--set", f"tasks.a.config.gate={json.dumps(str(gate))}")
    _inside(gate)
    code, _, err = _done(_taskloom("run", str(flow), "--on-limit", "refuse"))
    assert code == 2
    assert "workflow 'flow' already has 1 active run(s) (max_active_runs)" in err
    assert "Traceback" not in err
    _go(gate)
    assert _done(first)[0] == 0
    assert len(_entries(tmp_path)) == 2


def _killed_run(tmp_path: Path, flow: Path, *sets: str, **env: str) -> tuple[str, int]:
    gate = _gate(tmp_path, "killed")
    proc = _taskloom("run", str(flow), "--set", f"tasks.a.config.gate={json.dumps(str(gate))}",
                     "--set", 'taskloom.store_options.durability="safe"', *sets, **env)
    _inside(gate)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    with _db(tmp_path) as conn:
        (run_id,) = conn.execute("SELECT id FROM runs").fetchone()
    return run_id, proc.pid


def test_kill_and_resume_keeps_the_set_overrides_and_store_settings(tmp_path):
    flow = _workflow(tmp_path)
    run_id, _ = _killed_run(tmp_path, flow, "--set", 'tasks.a.config.tag="from-set"',
                            TASKLOOM_MAX_WORKERS="3")
    with _db(tmp_path) as conn:
        (recorded,) = conn.execute("SELECT overrides FROM runs").fetchone()
    assert json.loads(recorded)["taskloom.store_options.durability"] == "safe"
    # The resume's own --set wins over the recorded one: here it lifts the gate.
    code, out, err = _done(_taskloom("resume", run_id, str(flow), "--set",
                                     'tasks.a.config.gate=""'))
    assert code == 0, (out, err)
    assert f"run {run_id} completed" in out
    assert [e[3] for e in _entries(tmp_path)] == ["from-set", "from-set", "from-set"]
    assert len(_entries(tmp_path, "pre")) == 2  # ran once, its result kept by the resume
    with _db(tmp_path) as conn:
        status, overrides = conn.execute("SELECT status, overrides FROM runs").fetchone()
    assert status == "completed"
    assert json.loads(overrides)["taskloom.store_options.durability"] == "safe"
    assert json.loads(overrides)["tasks.a.config.tag"] == "from-set"
    assert json.loads(overrides)["taskloom.max_workers"] == 3  # from the environment


def test_two_resumes_at_once_one_proceeds_the_others_wait_or_refuse(tmp_path):
    flow = _workflow(tmp_path)
    run_id, _ = _killed_run(tmp_path, flow)
    gate = _gate(tmp_path, "resume")
    first = _taskloom("resume", run_id, str(flow), "--set",
                      f"tasks.a.config.gate={json.dumps(str(gate))}")
    _inside(gate)
    code, _, err = _done(_taskloom("resume", run_id, str(flow), "--on-conflict", "error",
                                   "--set", 'tasks.a.config.gate=""'))
    assert code == 2
    assert f"run '{run_id}' is running in process {first.pid}@{socket.gethostname()}" in err
    waiter = _taskloom("resume", run_id, str(flow), "--set", 'tasks.a.config.gate=""')
    assert f"run '{run_id}' is running in process {first.pid}@" in _waiting(waiter)
    _go(gate)
    assert _done(first)[0] == 0
    code, out, _ = _done(waiter)
    assert code == 0 and f"run {run_id} already completed; nothing to do" in out
    # The killed run's execution and the first resume's: nothing else ran.
    assert [e[0] for e in _entries(tmp_path)] == ["start", "start", "end"]


def test_run_with_a_run_id_runs_once_and_waits_for_a_holder(tmp_path):
    flow, gate = _workflow(tmp_path), _gate(tmp_path, "g")
    first = _taskloom("run", str(flow), "--run-id", "nightly-1",
                      "--set", f"tasks.a.config.gate={json.dumps(str(gate))}")
    _inside(gate)
    code, _, err = _done(_taskloom("run", str(flow), "--run-id", "nightly-1",
                                   "--on-conflict", "error"))
    assert code == 2 and f"run 'nightly-1' is running in process {first.pid}@" in err
    waiter = _taskloom("run", str(flow), "--run-id", "nightly-1")
    assert "run 'nightly-1' is running in process" in _waiting(waiter)
    _go(gate)
    assert _done(first)[0] == 0
    code, out, _ = _done(waiter)
    assert code == 0 and "run nightly-1 already completed; nothing to do" in out
    assert [e[0] for e in _entries(tmp_path)] == ["start", "end"]
