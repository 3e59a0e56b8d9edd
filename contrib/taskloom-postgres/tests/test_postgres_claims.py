"""Run claims in PostgreSQL with real processes: two racing on one run id execute its body
once (counted in a side file), a waiting process is woken by the release's notification, a
SIGKILLed holder's claim is taken over, and ``max_active_runs`` never lets two overlap."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from taskloom_postgres import PostgresStore

# The core suite's worker, which takes a DSN as well as a database file.
WORKER = Path(__file__).resolve().parents[3] / "tests" / "std" / "claim_worker.py"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL, pids")


def _spawn(dsn: str, run_id: str, log: Path, mode: str,
           **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), dsn, run_id, str(log), mode, json.dumps(options)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def _inside(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside"


def _waiting(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "waiting" in line, line
    return line


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _lines(log: Path) -> list[tuple[str, float, int]]:
    out = []
    for line in log.read_text().splitlines():
        kind, t, pid = line.split()
        out.append((kind, float(t), int(pid)))
    return out


@pytest.mark.parametrize("attempt", range(2))
def test_two_processes_racing_on_one_run_id_execute_the_body_once(fresh_dsn, tmp_path,
                                                                  attempt):
    log = tmp_path / "side.log"
    PostgresStore(fresh_dsn).close()  # the schema exists: both racers start from one point
    procs = [_spawn(fresh_dsn, "invoice-2026-12-01", log, "free") for _ in range(2)]
    outs = [_finish(p) for p in procs]
    assert [code for code, _, _ in outs] == [0, 0], outs
    starts = [entry for entry in _lines(log) if entry[0] == "start"]
    assert len(starts) == 1
    assert {out.strip() for _, out, _ in outs} == {f"result completed {starts[0][2]}"}


def test_a_waiting_process_runs_after_the_holder_and_returns_its_results(fresh_dsn, tmp_path):
    log = tmp_path / "side.log"
    first = _spawn(fresh_dsn, "r1", log, "gate")
    _inside(first)
    second = _spawn(fresh_dsn, "r1", log, "free")
    line = _waiting(second)
    assert f"run 'r1' is running in process {first.pid}@{socket.gethostname()}" in line
    _release(first)
    assert _finish(first)[0] == 0
    code, out, _ = _finish(second)
    assert code == 0 and out.strip() == f"result completed {first.pid}"
    assert [kind for kind, _, _ in _lines(log)] == ["start", "end"]


def test_a_claim_left_by_a_sigkilled_process_is_taken_over(fresh_dsn, tmp_path):
    log = tmp_path / "side.log"
    first = _spawn(fresh_dsn, "r1", log, "gate")
    _inside(first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    with psycopg.connect(fresh_dsn) as conn:
        held = conn.execute("SELECT run_id, pid FROM run_claims").fetchall()
    assert held == [("r1", first.pid)]  # left behind by the killed process
    code, out, err = _finish(_spawn(fresh_dsn, "r1", log, "free", on_conflict="error"))
    assert code == 0, (out, err)
    assert "taking over the claim" in err
    runs = [pid for kind, _, pid in _lines(log) if kind == "start"]
    assert runs == [first.pid, runs[-1]] and runs[-1] != first.pid
    assert out.strip() == f"result completed {runs[-1]}"


def test_max_active_runs_one_never_overlaps_two_processes(fresh_dsn, tmp_path):
    log = tmp_path / "side.log"
    first = _spawn(fresh_dsn, "-", log, "gate", max_active_runs=1)
    _inside(first)
    second = _spawn(fresh_dsn, "-", log, "free", max_active_runs=1)
    assert "max_active_runs = 1" in _waiting(second)
    refused = _finish(_spawn(fresh_dsn, "-", log, "free", max_active_runs=1,
                             on_limit="refuse"))
    assert refused[0] == 2 and f"{first.pid}@{socket.gethostname()}" in refused[1]
    _release(first)
    assert _finish(first)[0] == 0
    assert _finish(second)[0] == 0
    entries = _lines(log)
    assert [kind for kind, _, _ in entries] == ["start", "end", "start", "end"]
    assert entries[1][1] <= entries[2][1]
    assert entries[0][2] == first.pid and entries[2][2] == second.pid


def test_heartbeats_renew_this_process_claims_in_server_time(fresh_dsn):
    store = PostgresStore(fresh_dsn, claim_lease=0.3, flush_interval=0.01)
    try:
        release = store.claim_run("r1", "wf")
        with psycopg.connect(fresh_dsn, autocommit=True) as conn:
            (first,) = conn.execute("SELECT heartbeat FROM run_claims").fetchone()
            renewed = False
            for _ in range(20_000):  # bounded: each pass is one query
                (beat,) = conn.execute("SELECT heartbeat FROM run_claims").fetchone()
                if beat > first:
                    renewed = True
                    break
            assert renewed
            release()
            assert conn.execute("SELECT count(*) FROM run_claims").fetchone() == (0,)
    finally:
        store.close()
