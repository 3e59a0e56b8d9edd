"""A running scheduler continues a waiting run whose process was killed, once its signal
arrives or its durable timer is due; claimed, so nothing runs twice."""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from approval_steps import STEPS as BASE_STEPS

from taskloom import Engine, FakeClock
from taskloom.api.signals import (
    WaitResumer,
    resume_satisfied_runs,
    resume_waiting_run,
    satisfied_runs,
)
from taskloom.app.config import load_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]

STEPS = BASE_STEPS + textwrap.dedent('''

    def after(nap):
        _log("after nap")
        return "rested"

    def cleanup():
        _log("cleanup")
        return "clean"

    def child_publish(approve):
        _log(f"child publish {approve['ok']}")
        return "out"

    def after_child(child):
        _log(f"after child {child['publish']}")
        return "done"
''')

APPROVAL = textwrap.dedent('''
    [tasks.prepare]
    call = "res_steps:prepare"

    [tasks.approve]
    wait_for = "approval"
    payload_schema = { approved = "bool" }
    depends_on = ["prepare"]

    [tasks.publish]
    call = "res_steps:publish"
    depends_on = ["prepare", "approve"]
''')

TIMERS = textwrap.dedent('''
    [tasks.prepare]
    call = "res_steps:prepare"

    [tasks.nap]
    sleep = 3600
    depends_on = ["prepare"]

    [tasks.after]
    call = "res_steps:after"
    depends_on = ["nap"]

    [tasks.approve]
    wait_for = "approval"
    wait_timeout = 7200
    depends_on = ["prepare"]

    [tasks.cleanup]
    call = "res_steps:cleanup"
    depends_on = ["approve"]
    trigger_rule = "all_done"
''')


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}


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


def _open_waits(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM waits WHERE ended IS NULL")
                   .fetchone()[0])
    finally:
        conn.close()


def _killed_while_waiting(tmp_path: Path, config: str, waits: int = 1) -> tuple[Path, str]:
    """A `taskloom run` of ``config`` SIGKILLed once ``waits`` steps wait: (db, run id)."""
    (tmp_path / "res_steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(config)
    db = tmp_path / ".taskloom" / "taskloom.db"
    proc = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while _status(db) != "waiting" or _open_waits(db) < waits:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run_id = sqlite3.connect(db).execute("SELECT id FROM runs").fetchone()[0]
    return db, run_id


def _ran(tmp_path: Path) -> list[str]:
    return (tmp_path / "ran.log").read_text().splitlines()


def test_two_schedulers_continue_an_approved_run_once(tmp_path):
    db, run_id = _killed_while_waiting(tmp_path, APPROVAL)
    schedulers = [subprocess.Popen([*CLI, "schedule", "--resume-every", "0.05"],
                                   cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        for proc in schedulers:  # each is up, its stop signals handled, before the signal
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and proc.stdout.readline().startswith("continuing waiting runs")
        sent = subprocess.run([*CLI, "signal", run_id, "approval", "--data",
                               '{"approved": true}'], cwd=tmp_path, env=_env(tmp_path),
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        deadline = time.monotonic() + 60
        while _status(db) != "completed":
            assert all(p.poll() is None for p in schedulers)
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        outs = []
        for proc in schedulers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            outs.append(out)
    assert [p.returncode for p in schedulers] == [0, 0], outs
    assert _ran(tmp_path) == ["prepare", "publish draft True"]
    continued = [out for out in outs if f"(run {run_id}): completed" in out]
    assert len(continued) == 1, outs
    # A manual resume afterwards has nothing to do.
    again = subprocess.run([*CLI, "resume", run_id], cwd=tmp_path, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already completed" in again.stdout
    assert _ran(tmp_path) == ["prepare", "publish draft True"]


def test_a_due_timer_and_a_timed_out_wait_continue_on_a_fake_clock(tmp_path, monkeypatch):
    db, run_id = _killed_while_waiting(tmp_path, TIMERS, waits=2)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("res_steps", None)
    config = load_config(tmp_path / "taskloom.toml")
    clock = FakeClock(start=time.time())
    engine = Engine(clock=clock, store="sqlite", store_options={"path": str(db)})
    rebuilds: list[str] = []

    def rebuild(record):
        rebuilds.append(record.id)
        return config.build_tasks(), config.conditions()

    resumer = WaitResumer(engine, rebuild)
    try:
        assert resumer.check() == []  # nothing is due, no signal came
        assert satisfied_runs(engine.store, clock.time()) == []
        resumer.start(every=10)  # looks every 10 s of the fake clock
        clock.advance(3700)  # the nap is over; the approval has not timed out yet
        deadline = time.monotonic() + 60
        while "after nap" not in (_ran(tmp_path)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert resumer.check() == []  # being continued here already
        while clock.pending_timers() != 1:  # the approval's timeout, armed again
            assert time.monotonic() < deadline
            time.sleep(0.01)
        clock.advance(3600)
        while run_id not in resumer.finished:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        resumer.stop("SIGTERM")
    finally:
        resumer.stop("SIGTERM")
        engine.close()
    summary = resumer.finished[run_id]
    assert summary.status == "failed" and "approve" in summary.errors
    assert rebuilds == [run_id] and resumer.errors == {}
    assert _ran(tmp_path) == ["prepare", "after nap", "cleanup"]


def test_resume_satisfied_runs_skips_a_claimed_run_and_times_out_a_wait(tmp_path,
                                                                        monkeypatch):
    db, run_id = _killed_while_waiting(tmp_path, TIMERS, waits=2)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("res_steps", None)
    config = load_config(tmp_path / "taskloom.toml")
    clock = FakeClock(start=time.time() + 7300)  # the nap is over, the approval timed out
    engine = Engine(clock=clock, store="sqlite", store_options={"path": str(db)})

    def rebuild(record):
        return config.build_tasks(), config.conditions()

    try:
        (record,) = satisfied_runs(engine.store, clock.time())
        assert record.id == run_id
        held, release = threading.Event(), threading.Event()

        def hold() -> None:  # another holder of the run (a manual resume, say)
            _, let_go = engine.claim(run_id, record.workflow)
            held.set()
            release.wait(60)
            let_go()

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(60)
        assert resume_waiting_run(engine, record, rebuild) is None
        assert resume_satisfied_runs(engine, rebuild, timeout=60) == {}
        release.set()
        holder.join(60)

        done = resume_satisfied_runs(engine, rebuild, timeout=60)
        summary = done[run_id]
        assert summary.status == "failed"
        assert "no signal 'approval' within 7200s" in summary.errors["approve"]
        assert sorted(_ran(tmp_path)) == ["after nap", "cleanup", "prepare"]
        assert resume_satisfied_runs(engine, rebuild, timeout=60) == {}  # not waiting now
    finally:
        engine.close()
    assert _ran(tmp_path).count("prepare") == 1


def test_a_scheduler_leaves_runs_of_other_files_and_those_still_waiting(tmp_path,
                                                                      monkeypatch):
    db, run_id = _killed_while_waiting(tmp_path, APPROVAL)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("res_steps", None)
    config = load_config(tmp_path / "taskloom.toml")
    engine = Engine(store="sqlite", store_options={"path": str(db)})
    try:
        asked: list[str] = []

        def other_file(record):
            asked.append(record.id)
            return None

        assert resume_satisfied_runs(engine, other_file) == {}  # no signal yet
        assert asked == []
        engine.signal(run_id, "approval", {"approved": False})
        assert resume_satisfied_runs(engine, other_file) == {}  # left alone
        assert asked == [run_id] and _status(db) == "waiting"
        done = resume_satisfied_runs(
            engine, lambda r: (config.build_tasks(), config.conditions()), timeout=60)
        assert done[run_id].status == "completed"
    finally:
        engine.close()
    assert _ran(tmp_path) == ["prepare", "publish draft False"]


def test_schedule_without_schedules_or_waiting_steps_exits_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from taskloom.app.cli import main

    (tmp_path / "res_steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text('[tasks.prepare]\ncall = "res_steps:prepare"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["schedule"])
    assert result.exit_code == 2
    assert "no schedules to run" in result.output and "no waiting steps" in result.output
    (tmp_path / "taskloom.toml").write_text(APPROVAL)
    off = CliRunner().invoke(main, ["schedule", "--resume-every", "0"])
    assert off.exit_code == 2 and "no waiting steps to continue" in off.output


PARENT = textwrap.dedent('''
    [tasks.prepare]
    call = "res_steps:prepare"

    [tasks.child]
    subflow = "child.toml"
    depends_on = ["prepare"]

    [tasks.after]
    call = "res_steps:after_child"
    depends_on = ["child"]
''')

CHILD = textwrap.dedent('''
    [tasks.approve]
    wait_for = "approval"

    [tasks.publish]
    call = "res_steps:child_publish"
    depends_on = ["approve"]
''')


def test_a_waiting_child_run_continues_through_its_parent(tmp_path, monkeypatch):
    (tmp_path / "res_steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(PARENT)
    (tmp_path / "child.toml").write_text(CHILD)
    db = tmp_path / ".taskloom" / "taskloom.db"
    proc = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not db.is_file() or _open_waits_safe(db) < 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    conn = sqlite3.connect(db)
    (parent_id,) = conn.execute("SELECT id FROM runs WHERE parent_id IS NULL").fetchone()
    conn.close()
    child_id = f"{parent_id}.child"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("res_steps", None)
    config = load_config(tmp_path / "taskloom.toml")
    engine = Engine(store="sqlite", store_options={"path": str(db)})

    def rebuild(record):
        assert record.id == parent_id  # the parent is resumed, never the child alone
        return config.build_tasks(), config.conditions()

    try:
        assert resume_satisfied_runs(engine, rebuild) == {}  # no signal yet
        engine.signal(child_id, "approval", {"ok": True})
        done = resume_satisfied_runs(engine, rebuild, timeout=60)
        assert done[parent_id].status == "completed", done[parent_id].errors
        assert engine.recorded(child_id).status == "completed"
    finally:
        engine.close()
    assert _ran(tmp_path) == ["prepare", "child publish True", "after child out"]


def _open_waits_safe(db: Path) -> int:
    try:
        return _open_waits(db)
    except sqlite3.Error:  # the schema is being created by the other process
        return 0
