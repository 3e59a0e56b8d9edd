"""Run ids claimed in the store across processes, and ``max_active_runs`` (real processes,
a real SQLite file; each body appends ``start``/``end`` lines to a side file)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from taskloom import Engine, Task, TaskloomError
from taskloom_std.stores.claims import RunClaimedError
from taskloom_std.stores.memory import MemoryStore
from taskloom_std.stores.sqlite import SqliteStore

WORKER = Path(__file__).resolve().parent / "claim_worker.py"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL, pids")


def _spawn(db: Path, run_id: str, log: Path, mode: str, **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), run_id, str(log), mode, json.dumps(options)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def _inside(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside"  # the body is running now


def _waiting(proc: subprocess.Popen[str]) -> str:
    """Blocks until the process says it waits for a claim (its log line on stderr)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting" in line, line
    return line


def _lines(log: Path) -> list[tuple[str, float, int]]:
    out = []
    for line in log.read_text().splitlines():
        kind, t, pid = line.split()
        out.append((kind, float(t), int(pid)))
    return out


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


@pytest.mark.parametrize("attempt", range(5))
def test_two_processes_racing_on_one_run_id_execute_the_body_once(tmp_path, attempt):
    db, log = tmp_path / "t.db", tmp_path / "side.log"
    SqliteStore(db).close()  # the schema exists: both racers start from the same point
    procs = [_spawn(db, "invoice-2026-12-01", log, "free") for _ in range(2)]
    outs = [_finish(p) for p in procs]
    assert [code for code, _, _ in outs] == [0, 0], outs
    starts = [entry for entry in _lines(log) if entry[0] == "start"]
    assert len(starts) == 1
    # Both report the one execution's result: the body returns its process's pid.
    assert {out.strip() for _, out, _ in outs} == {f"result completed {starts[0][2]}"}


def test_a_second_process_waits_for_the_holder_and_returns_its_results(tmp_path):
    db, log = tmp_path / "t.db", tmp_path / "side.log"
    first = _spawn(db, "r1", log, "gate")
    _inside(first)
    second = _spawn(db, "r1", log, "free")
    line = _waiting(second)
    assert f"run 'r1' is running in process {first.pid}@{socket.gethostname()}" in line
    _release(first)
    assert _finish(first)[0] == 0
    code, out, _ = _finish(second)
    assert code == 0 and out.strip() == f"result completed {first.pid}"
    assert [kind for kind, _, _ in _lines(log)] == ["start", "end"]


def test_on_conflict_error_names_the_run_id_and_the_holding_process(tmp_path):
    db, log = tmp_path / "t.db", tmp_path / "side.log"
    first = _spawn(db, "r1", log, "gate")
    _inside(first)
    code, out, _ = _finish(_spawn(db, "r1", log, "free", on_conflict="error"))
    assert code == 2
    assert out.strip() == f"error run 'r1' is running in process {first.pid}@{socket.gethostname()}"
    _release(first)
    assert _finish(first)[0] == 0
    assert len(_lines(log)) == 2


def test_a_claim_left_by_a_sigkilled_process_is_taken_over(tmp_path):
    db, log = tmp_path / "t.db", tmp_path / "side.log"
    first = _spawn(db, "r1", log, "gate")
    _inside(first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    store = SqliteStore(db)
    try:
        with store.read() as conn:
            held = conn.execute("SELECT run_id, pid FROM run_claims").fetchall()
    finally:
        store.close()
    assert held == [("r1", first.pid)]  # left behind by the killed process
    # The holder's pid is gone on this host: taken over at once, even when asked to refuse.
    code, out, err = _finish(_spawn(db, "r1", log, "free", on_conflict="error"))
    assert code == 0, (out, err)
    assert "taking over the claim" in err
    runs = [pid for kind, _, pid in _lines(log) if kind == "start"]
    assert out.strip() == f"result completed {runs[-1]}"
    assert runs == [first.pid, runs[-1]] and runs[-1] != first.pid  # resumed, ran again


def test_max_active_runs_one_never_overlaps_two_processes(tmp_path):
    db, log = tmp_path / "t.db", tmp_path / "side.log"
    first = _spawn(db, "-", log, "gate", max_active_runs=1)
    _inside(first)
    second = _spawn(db, "-", log, "free", max_active_runs=1)
    assert "max_active_runs = 1" in _waiting(second)
    _release(first)
    assert _finish(first)[0] == 0
    assert _finish(second)[0] == 0
    entries = _lines(log)
    assert [kind for kind, _, _ in entries] == ["start", "end", "start", "end"]
    assert entries[1][1] <= entries[2][1]  # the second started after the first ended
    assert entries[0][2] == first.pid and entries[2][2] == second.pid


def test_max_active_runs_refuse_names_the_runs_going(tmp_path):
    db, log = tmp_path / "t.db", tmp_path / "side.log"
    first = _spawn(db, "-", log, "gate", max_active_runs=1, on_limit="refuse")
    _inside(first)
    code, out, _ = _finish(_spawn(db, "-", log, "free", max_active_runs=1, on_limit="refuse"))
    assert code == 2
    assert out.startswith("error workflow 'wf' already has 1 active run(s) (max_active_runs)")
    assert f"{first.pid}@{socket.gethostname()}" in out
    _release(first)
    assert _finish(first)[0] == 0
    assert len(_lines(log)) == 2


def _insert_claim(db: Path, run_id: str, host: str, heartbeat: float) -> None:
    store = SqliteStore(db)
    try:
        with store.read() as conn:
            conn.execute(
                "INSERT INTO run_claims(run_id, workflow, pid, host, claimed, heartbeat)"
                " VALUES (?, 'wf', 4242, ?, ?, ?)", (run_id, host, heartbeat, heartbeat),
            )
    finally:
        store.close()


def test_a_claim_whose_lease_expired_is_taken_over(tmp_path):
    db = tmp_path / "t.db"
    _insert_claim(db, "r1", "elsewhere.example", time.time() - 120)
    engine = Engine(store="sqlite", store_options={"path": str(db), "claim_lease": 60})
    try:
        summary = engine.run([Task("a", fn=lambda: 1)], run_id="r1", on_conflict="error")
    finally:
        engine.close()
    assert summary.ok and summary.results == {"a": 1}


def test_a_live_claim_on_another_host_is_refused_by_name(tmp_path):
    db = tmp_path / "t.db"
    _insert_claim(db, "r1", "elsewhere.example", time.time())
    engine = Engine(store="sqlite", store_options={"path": str(db)})
    try:
        with pytest.raises(RunClaimedError, match=r"run 'r1' is running in process "
                                                  r"4242@elsewhere\.example"):
            engine.run([Task("a", fn=lambda: 1)], run_id="r1", on_conflict="error")
    finally:
        engine.close()


def test_heartbeats_renew_the_claims_of_this_process(tmp_path):
    db = tmp_path / "t.db"
    store = SqliteStore(db, claim_lease=0.3, flush_interval=0.01)
    try:
        release = store.claim_run("r1", "wf")
        with store.read() as conn:
            (first,) = conn.execute("SELECT heartbeat FROM run_claims").fetchone()
        renewed = threading.Event()

        def beat_seen() -> None:
            while not renewed.is_set():
                with store.read() as conn:
                    (beat,) = conn.execute("SELECT heartbeat FROM run_claims").fetchone()
                if beat > first:
                    renewed.set()

        watcher = threading.Thread(target=beat_seen, daemon=True)
        watcher.start()
        assert renewed.wait(30)
        release()
        with store.read() as conn:
            assert conn.execute("SELECT count(*) FROM run_claims").fetchone() == (0,)
    finally:
        store.close()


def test_the_same_thread_may_claim_again_another_thread_waits():
    store = MemoryStore()
    release = store.claim_run("r1", "wf")
    store.claim_run("r1", "wf")()  # re-entrant: run() resuming under its own claim
    with pytest.raises(RunClaimedError, match="run 'r1' is running in process"):
        box: list[BaseException] = []

        def other() -> None:
            try:
                store.claim_run("r1", "wf", on_conflict="error")
            except BaseException as exc:
                box.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        raise box[0]
    release()
    store.claim_run("r1", "wf", on_conflict="error")()


def test_memory_store_max_active_runs_across_threads():
    engine = Engine(store="memory", config={"max_active_runs": 1})
    inside, go = threading.Event(), threading.Event()
    spans: list[tuple[str, float]] = []

    def body(context):
        spans.append(("start", time.monotonic()))
        if context.task.config.get("gate"):
            inside.set()
            go.wait(30)
        spans.append(("end", time.monotonic()))

    first = threading.Thread(target=engine.run, args=([Task("a", fn=body, config={"gate": 1})],),
                             kwargs={"name": "wf"})
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=engine.run, args=([Task("a", fn=body)],),
                              kwargs={"name": "wf"})
    second.start()
    go.set()
    first.join(30)
    second.join(30)
    assert [k for k, _ in spans] == ["start", "end", "start", "end"]


def test_bad_claim_options_are_named():
    engine = Engine(store="memory", config={"on_conflict": "later"})
    with pytest.raises(TaskloomError, match="on_conflict must be 'wait' or 'error'"):
        engine.run([Task("a", fn=lambda: 1)], run_id="x")
