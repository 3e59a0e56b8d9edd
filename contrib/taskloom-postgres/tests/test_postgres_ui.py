"""``taskloom ui`` over a PostgreSQL history: runs written by two processes are listed and
shown, a cancel request goes through the store to the process running the run, the
Schedules page lists the fires a scheduler skipped, and ``taskloom ui --db postgresql://...``
serves it over real HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient

from taskloom import Engine, Task
from taskloom.app.ui.history import History
from taskloom.app.ui.server import CSRF_COOKIE, create_app
from taskloom.testing import wait_until
from taskloom_postgres.cluster import free_port

STEPS = ("import os\n\ndef fetch():\n    return {'pid': os.getpid()}\n\n"
         "def report(fetch):\n    if os.environ.get('BREAK'):\n"
         "        raise ValueError('report is broken')\n    return 'ok'\n")
CONFIG = ('[taskloom]\nstore = "postgres"\n\n[tasks.fetch]\ncall = "steps:fetch"\n\n'
          '[tasks.report]\ncall = "steps:report"\ndepends_on = ["fetch"]\n')


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from taskloom.app.cli import main; main()",
                             *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture
def two_processes(fresh_dsn: str, tmp_path: Path) -> dict[str, str]:
    """Two ``taskloom run`` processes at once on one database: one completes, one fails.
    Their run ids by status."""
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(CONFIG)
    env = {**os.environ, "TASKLOOM_STORE_OPTIONS__DSN": fresh_dsn,
           "PYTHONPATH": str(tmp_path)}
    procs = [_cli("run", "taskloom.toml", env=env, cwd=tmp_path),
             _cli("run", "taskloom.toml", env={**env, "BREAK": "1"}, cwd=tmp_path)]
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0, 1], [p.communicate() for p in procs]
    history = History.open(fresh_dsn)
    try:
        runs = history.runs()["runs"]
    finally:
        history.close()
    assert len(runs) == 2
    return {r["status"]: r["id"] for r in runs}


def test_the_dashboard_lists_and_shows_runs_written_by_two_processes(fresh_dsn,
                                                                      two_processes):
    history = History.open(fresh_dsn)
    try:
        with TestClient(create_app(history, stream_seconds=0, poll=0.05)) as client:
            page = client.get("/runs")
            assert page.status_code == 200
            for run_id in two_processes.values():
                assert f'href="/runs/{run_id}"' in page.text
            assert "1 completed" in page.text and "1 failed" in page.text
            listed = client.get("/api/runs", params={"status": "failed"}).json()
            assert [r["id"] for r in listed["runs"]] == [two_processes["failed"]]
            assert listed["counts"] == {"completed": 1, "failed": 1}
            assert listed["workflows"] == [listed["runs"][0]["workflow"]]
            run = client.get(f"/api/runs/{two_processes['failed']}").json()
            tasks = {t["name"]: t for t in run["tasks"]}
            assert tasks["fetch"]["state"] == "completed"
            assert json.loads(tasks["fetch"]["result_preview"])["pid"] > 0
            assert tasks["report"]["state"] == "failed"
            assert "report is broken" in tasks["report"]["attempts"][-1]["error"]
            shown = client.get(f"/runs/{two_processes['failed'][:6]}")
            assert shown.status_code == 200 and "report is broken" in shown.text
            assert client.get("/events/runs").status_code == 200
    finally:
        history.close()


def test_cancel_from_the_dashboard_reaches_the_running_process_through_the_store(fresh_dsn):
    engine = Engine(max_workers=2, store="postgres", store_options={"dsn": fresh_dsn})
    started, release = threading.Event(), threading.Event()

    def slow(context):
        started.set()
        while not context.cancelled and not release.is_set():
            release.wait(0.02)  # a body polling its token
        return 1

    result: list = []
    runner = threading.Thread(target=lambda: result.append(
        engine.run([Task("slow", fn=slow)], run_id="long", name="wf")))
    runner.start()
    history = History.open(fresh_dsn)
    try:
        assert started.wait(30)
        with TestClient(create_app(history, stream_seconds=0, poll=0.05)) as client:
            client.get("/runs")
            token = client.cookies.get(CSRF_COOKIE)
            answer = client.post("/runs/long/cancel", data={"csrf": token},
                                 headers={"accept": "application/json"})
            assert answer.status_code == 200, answer.text
            runner.join(30)
            assert result and result[0].status == "cancelled"
            actions = client.get("/api/actions").json()
            assert [a["action"] for a in actions] == ["cancel"]
            assert actions[0]["handled"] is not None
    finally:
        release.set()
        runner.join(30)
        history.close()
        engine.close()


def test_taskloom_ui_serves_a_postgresql_history_over_http(fresh_dsn, two_processes,
                                                            tmp_path):
    port = free_port()
    proc = _cli("ui", "--db", fresh_dsn, "--port", str(port), env=dict(os.environ),
                cwd=tmp_path)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/runs" in line and fresh_dsn in line, (
            line, proc.stderr.read() if proc.poll() is not None else "")
        body = None
        for _ in range(200):  # bounded: the server may need a moment after printing
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs",
                                            timeout=5) as answer:
                    body = json.load(answer)
                break
            except OSError:
                if proc.poll() is not None:
                    break
                threading.Event().wait(0.05)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else ""
        assert sorted(r["id"] for r in body["runs"]) == sorted(two_processes.values())
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_run_started_from_the_dashboard_is_recorded_in_the_same_database(fresh_dsn,
                                                                           two_processes,
                                                                           tmp_path):
    from taskloom.testing import wait_until

    (tmp_path / "steps.py").write_text(STEPS)
    config = tmp_path / "taskloom.toml"
    config.write_text(CONFIG.replace('store = "postgres"', 'store = "sqlite"'))
    history = History.open(fresh_dsn)
    try:
        with TestClient(create_app(history, config_path=config, stream_seconds=0,
                                   poll=0.05)) as client:
            client.get("/runs")
            token = client.cookies.get(CSRF_COOKIE)
            answer = client.post("/workflow/start", follow_redirects=False,
                                 data={"csrf": token, "params": ""})
            assert answer.status_code == 303, answer.text

            def three_runs() -> bool:
                data = client.get("/api/runs").json()
                return data["total"] == 3 and data["runs"][0]["status"] != "running"

            wait_until(three_runs, 60)
            newest = client.get("/api/runs").json()["runs"][0]
            assert newest["id"] not in two_processes.values()
            assert newest["status"] == "completed"
            (action,) = client.get("/api/actions").json()
            assert action["action"] == "start"
            logs = tmp_path / ".taskloom" / "ui-actions"
            assert logs.is_dir() and not (tmp_path / ".taskloom" / "taskloom.db").exists()
    finally:
        history.close()


def test_the_schedules_page_lists_the_skipped_fires_a_scheduler_kept(fresh_dsn, tmp_path):
    (tmp_path / "steps.py").write_text(STEPS)
    config = tmp_path / "taskloom.toml"
    config.write_text(CONFIG + '\n[[schedules]]\ntask = "report"\nid = "nightly"\n'
                      'cron = "30 2 * * *"\ntimezone = "Europe/Berlin"\n')
    scheduler_side = Engine(store="postgres", store_options={"dsn": fresh_dsn})
    due = datetime(2026, 7, 1, 0, 30, tzinfo=timezone.utc)  # 02:30 in Berlin (summer)
    state = scheduler_side.store.schedule_state()
    state.record_skip("nightly", "misfire", due.timestamp(), "61.000s late (misfire grace 60s)")
    state.record_skip("nightly", "overlap", (due + timedelta(days=1)).timestamp(),
                      "1 run(s) still going (max_instances 1)")
    history = History.open(fresh_dsn)
    try:
        with TestClient(create_app(history, config_path=config, stream_seconds=0,
                                   poll=0.05)) as client:
            html = client.get("/schedules").text
            rows = re.findall(r'<tr class="skip-(\w+)"><td>([^<]+)</td>', html)
            assert rows == [("overlap", "2026-07-02T02:30:00+02:00"),
                            ("misfire", "2026-07-01T02:30:00+02:00")]  # newest first
            assert "61.000s late (misfire grace 60s)" in html
            [job] = client.get("/api/schedules").json()["jobs"]
            assert [s["kind"] for s in job["skips"]] == ["overlap", "misfire"]
    finally:
        history.close()
        scheduler_side.close()


def _sse_events(response: Any) -> Iterator[str]:
    """The event names of a Server-Sent Events stream, as they arrive."""
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("event: "):
            yield line[len("event: "):]


def test_live_streams_wake_on_the_databases_notifications(fresh_dsn):
    import http.client

    import uvicorn

    engine = Engine(max_workers=1, store="postgres", store_options={"dsn": fresh_dsn})
    engine.run([Task("a", fn=lambda: 1)], name="first")
    history = History.open(fresh_dsn)
    # Read the store every 60 s at most: within the stream's 30 s only an announced change
    # (a NOTIFY on taskloom_runs) can make it send a second update.
    app = create_app(history, stream_seconds=30, poll=60)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="ui-server", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30)
        conn = http.client.HTTPConnection("127.0.0.1", server.config.port, timeout=40)
        conn.request("GET", "/events/runs")
        events = _sse_events(conn.getresponse())
        assert next(events) == "update"  # the list as it is
        second = engine.run([Task("b", fn=lambda: 2)], name="second")
        assert next(events) == "update"  # woken by the notification of that run's records
        conn.close()
        assert history.store.listener().received > 0
        conn = http.client.HTTPConnection("127.0.0.1", server.config.port, timeout=40)
        conn.request("GET", f"/events/runs/{second.id}")
        assert list(_sse_events(conn.getresponse())) == ["update", "done"]  # finished
        conn.close()
    finally:
        server.should_exit = True
        thread.join(20)
        history.close()
        engine.close()


def test_a_sqlite_history_offers_no_watch_and_is_polled(tmp_path):
    engine = Engine(max_workers=1, store="sqlite",
                    store_options={"path": str(tmp_path / "h.db")})
    engine.run([Task("a", fn=lambda: 1)], name="first")
    engine.close()
    history = History.open(tmp_path / "h.db")
    try:
        assert history.watch_changes() is None
    finally:
        history.close()
