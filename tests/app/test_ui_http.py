"""The dashboard over HTTP (Starlette's test client) against a real SQLite history: every
page, fragment, JSON endpoint, event stream and action, the token and the CSRF check."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from ui_helpers import UiProject, WaitingRun, live_run, wait_for_status, waiting_run

from taskloom import Engine, Task
from taskloom.app.cli import main
from taskloom.app.cli.ui_cmd import is_loopback
from taskloom.app.ui.history import History
from taskloom.app.ui.layout import layers, layout
from taskloom.app.ui.schedules import next_fires
from taskloom.app.ui.server import CSRF_COOKIE, create_app
from taskloom.testing import wait_until


@pytest.fixture
def history(ui_project: UiProject) -> Iterator[History]:
    h = History.open(ui_project.db)
    yield h
    h.close()


@pytest.fixture
def client(history: History, ui_project: UiProject) -> Iterator[TestClient]:
    app = create_app(history, config_path=ui_project.config, stream_seconds=0, poll=0.05)
    with TestClient(app) as c:
        yield c


def _edges(html: str) -> int:
    """How many dependency curves the graph draws (one path, a move-to per curve)."""
    found = re.search(r'<path class="edges" d="([^"]*)"', html)
    return 0 if found is None else found.group(1).count("M")


def _csrf(client: TestClient) -> str:
    client.get("/runs")
    token = client.cookies.get(CSRF_COOKIE)
    assert token
    return token


# -- pages and JSON ---------------------------------------------------------------------------
def test_runs_page_lists_the_runs_with_counts_links_and_local_assets(client, ui_project):
    page = client.get("/runs")
    assert page.status_code == 200
    html = page.text
    for run in (ui_project.failed_run, ui_project.completed_run):
        assert f'href="/runs/{run}"' in html
    assert "1 completed" in html and "1 failed" in html
    assert 'sse-connect="/events/runs"' in html
    scripts = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert scripts and all(s.startswith("/") or s.startswith("?") for s in scripts), scripts
    for asset in ("/static/htmx.min.js", "/static/htmx-ext-sse.min.js", "/static/app.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/").url.path == "/runs"


def test_runs_filter_by_status_workflow_and_date_and_paginate(client, ui_project):
    failed = client.get("/api/runs", params={"status": "failed"}).json()
    assert [r["id"] for r in failed["runs"]] == [ui_project.failed_run]
    assert failed["total"] == 1 and failed["counts"] == {"completed": 1, "failed": 1}
    workflow = failed["runs"][0]["workflow"]
    assert failed["workflows"] == [workflow]
    assert client.get("/api/runs", params={"workflow": workflow}).json()["total"] == 2
    assert client.get("/api/runs", params={"workflow": "other"}).json()["total"] == 0
    today = datetime.now().date()
    assert client.get("/api/runs", params={"since": str(today)}).json()["total"] == 2
    assert client.get("/api/runs", params={"until": str(today - timedelta(days=1))}
                      ).json()["total"] == 0
    first = client.get("/api/runs", params={"per": 1}).json()
    second = client.get("/api/runs", params={"per": 1, "page": 2}).json()
    assert first["pages"] == 2 and first["total"] == 2
    assert {first["runs"][0]["id"], second["runs"][0]["id"]} == {
        ui_project.failed_run, ui_project.completed_run}
    html = client.get("/runs", params={"per": 1}).text
    assert 'rel="next"' in html and "page 1 of 2" in html
    table = client.get("/runs/table", params={"status": "completed"}).text
    assert ui_project.completed_run in table and ui_project.failed_run not in table


@pytest.mark.parametrize("query, message", [
    ({"status": "bogus"}, "status must be one of"),
    ({"since": "yesterday"}, "since must be a date"),
    ({"page": "0"}, "page must be >= 1"),
    ({"per": "x"}, "whole numbers"),
    ({"trigger": "cron"}, "trigger must be one of manual, schedule, resume, api"),
])
def test_bad_filters_are_a_400_naming_the_parameter(client, query, message):
    answer = client.get("/api/runs", params=query)
    assert answer.status_code == 400 and message in answer.text


def test_run_page_shows_graph_timeline_attempts_errors_and_results(client, ui_project):
    html = client.get(f"/runs/{ui_project.failed_run}").text
    assert '<svg class="dag"' in html and '<svg class="gantt"' in html
    assert 'class="node s-completed" data-task="extract"' in html
    assert 'class="node s-failed" data-task="transform"' in html
    assert _edges(html) == 2  # extract -> transform -> load
    assert "ValueError: transform is broken" in html
    assert "Traceback (most recent call last)" in html
    assert html.count('class="bar s-failed') == 1 and 'class="bar s-retrying' in html
    assert 'id="retry"' in html and 'id="cancel"' not in html
    assert "sse-connect" not in html  # a finished run has nothing to listen to
    done = client.get(f"/runs/{ui_project.completed_run}").text
    assert '<code class="result">{&#34;total&#34;: 12}</code>' in done
    assert client.get(f"/runs/{ui_project.completed_run[:6]}").status_code == 200
    live = client.get(f"/runs/{ui_project.failed_run}/live").text
    assert '<svg class="dag"' in live and "<html" not in live


def test_api_run_is_the_pages_data(client, ui_project):
    run = client.get(f"/api/runs/{ui_project.failed_run}").json()
    assert run["status"] == "failed" and run["dependencies"]["load"] == ["transform"]
    tasks = {t["name"]: t for t in run["tasks"]}
    assert tasks["extract"]["result_preview"] == '{"rows": [1, 2, 3]}'
    attempts = tasks["transform"]["attempts"]
    assert [a["state"] for a in attempts] == ["retrying", "failed"]
    assert all(a["finished"] >= a["started"] for a in attempts)
    assert "ValueError" in attempts[-1]["traceback"]
    assert client.get("/api/runs/nope").status_code == 404
    assert client.get("/runs/nope").status_code == 404


def test_results_that_are_not_json_are_never_unpickled(tmp_path, monkeypatch):
    db = tmp_path / "h.db"
    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(db)})
    summary = engine.run([Task("shape", fn=lambda: {1, 2, 3})], name="pickles")
    engine.close()
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the dashboard unpickled a result")

    monkeypatch.setattr(pickle, "loads", refuse)
    history = History.open(db)
    try:
        with TestClient(create_app(history)) as c:
            run = c.get(f"/api/runs/{summary.id}").json()
            html = c.get(f"/runs/{summary.id}").text
    finally:
        history.close()
    preview = run["tasks"][0]["result_preview"]
    assert preview.startswith("(not JSON: pickled") and preview.endswith("not shown)")
    assert "not shown" in html


def test_workflow_page_draws_the_configured_graph_with_options(client):
    html = client.get("/workflow").text
    assert '<svg class="dag"' in html and _edges(html) == 2
    assert "Read the rows" in html and "max_retries" in html
    data = client.get("/api/workflow").json()
    assert [t["name"] for t in data["tasks"]] == ["extract", "transform", "load"]
    assert data["dependencies"]["transform"] == ["extract"]


def test_schedules_page_lists_the_next_ten_fires_in_the_jobs_zone(client):
    html = client.get("/schedules").text
    assert "nightly" in html and "cron &#39;30 2 * * *&#39; in Europe/Berlin" in html
    jobs = client.get("/api/schedules").json()["jobs"]
    assert len(jobs) == 1 and len(jobs[0]["next"]) == 10
    assert all(f["at"][11:16] == "02:30" for f in jobs[0]["next"])


def test_schedules_page_lists_the_last_misfires_and_overlaps(client, history):
    assert "no misfires or overlaps recorded" in client.get("/schedules").text
    state = history.store.schedule_state()
    due = datetime(2026, 7, 1, 0, 30, tzinfo=timezone.utc)  # 02:30 in Berlin (summer)
    state.record_skip("nightly", "misfire", due.timestamp(), "61.000s late (misfire grace 60s)")
    state.record_skip("nightly", "overlap", (due + timedelta(days=1)).timestamp(),
                      "1 run(s) still going (max_instances 1)")
    html = client.get("/schedules").text
    assert "<h3>Last skipped fires</h3>" in html and "no misfires" not in html
    rows = re.findall(r'<tr class="skip-(\w+)"><td>([^<]+)</td>', html)
    assert rows == [("overlap", "2026-07-02T02:30:00+02:00"),
                    ("misfire", "2026-07-01T02:30:00+02:00")]  # newest first, job's zone
    assert "61.000s late (misfire grace 60s)" in html
    [job] = client.get("/api/schedules").json()["jobs"]
    assert [s["kind"] for s in job["skips"]] == ["overlap", "misfire"]
    assert job["skips"][1]["detail"] == "61.000s late (misfire grace 60s)"


def test_next_fires_mark_a_dst_change():
    from zoneinfo import ZoneInfo

    from taskloom import load_plugins

    trigger = load_plugins().registry.create("trigger", "cron", expression="30 12 * * *",
                                             timezone="Europe/Berlin")
    now = datetime(2026, 3, 25, 0, 0, tzinfo=timezone.utc)
    fires = next_fires(trigger, now, 10, ZoneInfo("Europe/Berlin"))
    marked = [f["at"][:10] for f in fires if f["dst"]]
    assert marked == ["2026-03-29"]  # the first fire in summer time
    assert fires[0]["offset"] == "+0100" and fires[-1]["offset"] == "+0200"


def test_pages_without_a_configuration_say_how_to_give_one(history):
    with TestClient(create_app(history)) as c:
        assert "start the dashboard with --config FILE" in c.get("/workflow").text
        assert "--config FILE" in c.get("/schedules").text
        assert c.get("/api/workflow").status_code == 409


# -- event streams ------------------------------------------------------------------------------
def test_a_finished_runs_stream_sends_one_update_then_done(client, ui_project):
    body = client.get(f"/events/runs/{ui_project.completed_run}").text
    assert body.count("event: update") == 1 and body.endswith("event: done\ndata: done\n\n")
    assert client.get("/events/runs/nope").status_code == 404


def test_the_run_list_stream_sends_the_current_state(client):
    answer = client.get("/events/runs")
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "event: update" in answer.text


def test_a_running_runs_stream_follows_it_until_it_finishes(ui_project):
    with live_run(ui_project.db) as live:
        history = History.open(ui_project.db)
        try:
            app = create_app(history, stream_seconds=30, poll=0.02)
            with TestClient(app) as c:
                html = c.get(f"/runs/{live.id}").text
                assert f'sse-connect="/events/runs/{live.id}"' in html
                assert 'class="node s-running" data-task="slow"' in html
                assert 'class="bar s-running open"' in html and 'class="now"' in html
                live.finish()  # the stream ends with the run
                body = c.get(f"/events/runs/{live.id}").text
                assert body.count("event: update") == 1 and "event: done" in body
                html = c.get(f"/runs/{live.id}").text
                assert 'class="node s-completed" data-task="after"' in html
        finally:
            history.close()


# -- the token ------------------------------------------------------------------------------------
def test_with_a_token_every_request_needs_it(history):
    app = create_app(history, token="s3cret", stream_seconds=0)
    with TestClient(app) as c:
        for url in ("/runs", "/api/runs", "/events/runs", "/static/htmx.min.js", "/schedules"):
            assert c.get(url).status_code == 401, url
        assert c.post("/runs/x/cancel").status_code == 401
        assert c.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/runs", params={"token": "s3cret"}).status_code == 200
        # the cookie set by ?token= carries the next requests, the stream included
        assert c.get("/events/runs").status_code == 200
        assert c.get("/static/app.css").status_code == 200


def test_the_command_refuses_a_non_loopback_address_without_a_token(ui_project, monkeypatch):
    monkeypatch.delenv("TASKLOOM_UI_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["ui", "--db", str(ui_project.db), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "give --token" in result.output
    missing = CliRunner().invoke(main, ["ui", "--db", str(ui_project.folder / "none.db")])
    assert missing.exit_code == 2 and "no run history" in missing.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


# -- actions and CSRF ---------------------------------------------------------------------------
@pytest.mark.parametrize("sent", [None, "wrong"])
def test_posts_without_the_csrf_token_are_refused(client, ui_project, sent):
    _csrf(client)
    data = {} if sent is None else {"csrf": sent}
    for url in (f"/runs/{ui_project.failed_run}/retry", f"/runs/{ui_project.failed_run}/cancel",
                "/workflow/start"):
        answer = client.post(url, data=data)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert client.get("/api/actions").json() == []


def test_cancel_asks_the_running_process_through_the_store(ui_project):
    with live_run(ui_project.db) as live:
        history = History.open(ui_project.db)
        try:
            with TestClient(create_app(history)) as c:
                token = _csrf(c)
                answer = c.post(f"/runs/{live.id}/cancel", data={"csrf": token},
                                follow_redirects=False)
                assert answer.status_code == 303
                assert answer.headers["location"] == f"/runs/{live.id}"
                wait_until(lambda: live.run.status != "running", 10)
                live.finish()
                wait_for_status(ui_project.db, live.id, "cancelled")
                actions = c.get("/api/actions").json()
                assert [a["action"] for a in actions] == ["cancel"]
                assert actions[0]["run_id"] == live.id and actions[0]["handled"] is not None
                assert "taskloom ui (client testclient" in actions[0]["requested_by"]
                html = c.get(f"/runs/{live.id}").text
                assert "asked of the running process" in html
                again = c.post(f"/runs/{live.id}/cancel", headers={"X-CSRF-Token": token})
                assert again.status_code == 409
        finally:
            history.close()
    assert live.summary.status == "cancelled"


def test_retry_resumes_the_failed_run_in_a_child_process(client, ui_project):
    token = _csrf(client)
    assert client.post(f"/runs/{ui_project.completed_run}/retry",
                       data={"csrf": token}).status_code == 409
    (ui_project.folder / "fixed").write_text("")
    answer = client.post(f"/runs/{ui_project.failed_run}/retry", data={"csrf": token},
                         headers={"Accept": "application/json"})
    assert answer.json() == {"ok": True, "next": f"/runs/{ui_project.failed_run}"}
    wait_for_status(ui_project.db, ui_project.failed_run, "completed")
    run = client.get(f"/api/runs/{ui_project.failed_run}").json()
    assert run["resumes"] == 1
    assert [a["action"] for a in run["actions"]] == ["retry"]
    assert "taskloom resume --retry-failed" in run["actions"][0]["detail"]


def test_retry_needs_the_dashboard_started_with_the_runs_configuration(history, ui_project):
    from starlette.testclient import TestClient

    from taskloom.app.ui.server import create_app

    with TestClient(create_app(history, stream_seconds=0)) as bare:
        token = _csrf(bare)
        answer = bare.post(f"/runs/{ui_project.failed_run}/retry", data={"csrf": token})
    assert answer.status_code == 409
    assert f"taskloom ui --config {ui_project.config}" in answer.text
    assert history.actions(ui_project.failed_run) == []


def test_start_runs_the_workflow_with_parameters(client, ui_project):
    token = _csrf(client)
    bad = client.post("/workflow/start", data={"csrf": token, "params": "no equals sign"})
    assert bad.status_code == 400 and "KEY=VALUE" in bad.text
    answer = client.post("/workflow/start", follow_redirects=False, data={
        "csrf": token, "params": "taskloom.executor.max_workers=1\n"})
    assert answer.status_code == 303 and answer.headers["location"] == "/runs"

    def three_runs() -> bool:
        data = client.get("/api/runs").json()
        return data["total"] == 3 and data["runs"][0]["status"] not in ("running",)

    wait_until(three_runs, 30)
    newest = client.get("/api/runs").json()["runs"][0]
    assert newest["id"] not in (ui_project.failed_run, ui_project.completed_run)
    actions = client.get("/api/actions").json()
    assert actions[0]["action"] == "start"
    assert "--set taskloom.executor.max_workers=1" in actions[0]["detail"]


# -- the layout ---------------------------------------------------------------------------------
def test_layers_are_longest_paths_and_rows_follow_barycentres():
    deps = {"a": [], "b": ["a"], "c": ["a", "b"], "x": [], "y": ["x"]}
    assert layers(list(deps), deps) == {"a": 0, "b": 1, "c": 2, "x": 0, "y": 1}
    placed = layout(list(deps), deps)
    assert all(placed.nodes[u].x < placed.nodes[v].x for u, v in placed.edges)
    assert placed.nodes["b"].row < placed.nodes["y"].row  # b sits beside a, y beside x
    cyclic = {"p": ["q"], "q": ["p"], "r": []}
    assert layers(list(cyclic), cyclic) == {"p": 1, "q": 1, "r": 0}


def test_the_ui_store_queries_page_many_runs(tmp_path):
    db = tmp_path / "many.db"
    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(db)})
    for i in range(25):
        engine.run([Task("t", fn=lambda: None)], name=f"wf{i % 3}")
    engine.close()
    history = History.open(db)
    try:
        page = history.runs(workflow="wf1", limit=4, offset=4)
        assert page["total"] == 8 and len(page["runs"]) == 4
        assert all(r["workflow"] == "wf1" for r in page["runs"])
        starts = [r["started"] for r in page["runs"]]
        assert starts == sorted(starts, reverse=True)
        assert page["counts"] == {"completed": 8} and page["workflows"] == ["wf0", "wf1", "wf2"]
    finally:
        history.close()


def test_history_needs_a_database(tmp_path: Path):
    from taskloom.app.ui.history import HistoryUnavailable

    with pytest.raises(HistoryUnavailable, match="no run history"):
        History.open(tmp_path / "absent.db")


def test_a_big_run_lists_some_task_details_and_the_graph_asks_for_others(client, ui_project,
                                                                          monkeypatch):
    import taskloom.app.ui.server as server

    monkeypatch.setattr(server, "TASK_DETAILS", 1)
    html = client.get(f"/runs/{ui_project.failed_run}").text
    assert "tasks 1 to 1 of 3 listed" in html and "page 1 of 3" in html
    assert 'id="task-transform"' in html and 'id="task-extract"' not in html  # failed first
    assert f'href="/runs/{ui_project.failed_run}?task=extract#task-extract"' in html
    assert f'href="/runs/{ui_project.failed_run}?page=2" rel="next"' in html
    second = client.get(f"/runs/{ui_project.failed_run}", params={"page": 2}).text
    assert "tasks 2 to 2 of 3" in second and 'id="task-transform"' not in second
    assert client.get(f"/runs/{ui_project.failed_run}", params={"page": "x"}).status_code == 400
    asked = client.get(f"/runs/{ui_project.failed_run}", params={"task": "extract"}).text
    assert '<details id="task-extract" class="task" open>' in asked
    live = client.get(f"/runs/{ui_project.failed_run}/live", params={"task": "extract"}).text
    assert 'id="task-extract"' in live


def test_without_the_ui_extra_the_command_says_what_to_install(ui_project, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    result = CliRunner().invoke(main, ["ui", "--db", str(ui_project.db)])
    assert result.exit_code == 2 and "pip install 'taskloom[ui]'" in result.output


# -- trigger, parent and child runs, logs ------------------------------------------------------
def _family(db: Path) -> tuple[str, str]:
    """A parent run and a child run it started (``parent_id``), recorded through the store,
    both by the API (``trigger`` api)."""
    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(db)})
    try:
        parent = engine.run([Task("plan", fn=lambda: 1)], name="parent", trigger="api")
        child = engine.open_run(name="child", trigger="api", parent_id=parent.id)
        child.add([Task("part", fn=lambda: 2)])
        child.start()
        child.wait()
        assert child.close().ok
        return parent.id, child.id
    finally:
        engine.close()


def test_runs_filter_by_trigger_in_html_and_json(client, ui_project):
    parent, child = _family(ui_project.db)
    manual = client.get("/api/runs", params={"trigger": "manual"}).json()
    assert {r["id"] for r in manual["runs"]} == {ui_project.failed_run, ui_project.completed_run}
    assert manual["total"] == 2 and manual["counts"] == {"completed": 1, "failed": 1}
    api = client.get("/api/runs", params={"trigger": "api"}).json()
    assert {r["id"] for r in api["runs"]} == {parent, child} and api["total"] == 2
    assert all(r["trigger"] == "api" for r in api["runs"])
    assert client.get("/api/runs", params={"trigger": "schedule"}).json()["total"] == 0
    assert client.get("/api/runs").json()["total"] == 4
    html = client.get("/runs", params={"trigger": "api"}).text
    assert '<option value="api" selected>' in html
    assert f'href="/runs/{parent}"' in html and ui_project.failed_run not in html
    table = client.get("/runs/table", params={"trigger": "manual"}).text
    assert ui_project.failed_run in table and parent not in table
    assert "trigger=api" in client.get("/runs", params={"trigger": "api", "per": 1}).text


def test_a_run_links_its_parent_and_lists_its_children(client, ui_project):
    parent, child = _family(ui_project.db)
    page = client.get(f"/runs/{child}").text
    assert f'<a class="parent" href="/runs/{parent}">{parent}</a>' in page
    assert '<strong class="trigger">api</strong>' in page
    up = client.get(f"/runs/{parent}").text
    assert "<h2>Child runs</h2>" in up and f'<a href="/runs/{child}">{child}</a>' in up
    assert "Child runs" not in client.get(f"/runs/{ui_project.failed_run}").text
    data = client.get(f"/api/runs/{parent}").json()
    assert [c["id"] for c in data["children"]] == [child] and data["parent_id"] is None
    assert client.get(f"/api/runs/{child}").json()["parent_id"] == parent
    listed = client.get("/runs/table").text
    assert f'href="/runs/{parent}" title="started from run {parent}"' in listed


def test_the_run_page_shows_each_attempts_logs_escaped_and_capped(client, ui_project,
                                                                   monkeypatch):
    import taskloom.app.ui.server as server

    html = client.get(f"/runs/{ui_project.failed_run}").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; read 3 rows" in html
    assert "<script>alert" not in html
    run = ui_project.failed_run
    for attempt in (1, 2):  # transform failed once, was retried and failed again
        assert f'href="/runs/{run}/log?task=transform&amp;attempt={attempt}">all of it' in html
    monkeypatch.setattr(server, "LOG_PREVIEW", 20)
    capped = client.get(f"/runs/{run}").text
    assert "(first 20 of " in capped and "summing 3 rows; xxxxx" not in capped
    full = client.get(f"/runs/{run}/log", params={"task": "transform", "attempt": 2})
    assert full.status_code == 200 and full.headers["content-type"].startswith("text/plain")
    assert full.headers["x-content-type-options"] == "nosniff"
    assert full.text.startswith("summing 3 rows; " + "x" * 500)
    assert client.get(f"/runs/{run}/log", params={"task": "transform", "attempt": 9}
                      ).status_code == 404
    assert client.get(f"/runs/{run}/log", params={"task": "transform"}).status_code == 400
    assert client.get(f"/runs/{run}/log", params={"task": "t", "attempt": "x"}
                      ).status_code == 400
    rows = client.get(f"/api/runs/{run}/logs", params={"task": "extract"}).json()
    assert [(r["task"], r["attempt"]) for r in rows] == [("extract", 1)]
    assert "read 3 rows" in rows[0]["text"]
    assert client.get("/api/runs/nope/logs").status_code == 404


def test_a_big_run_draws_a_compact_graph_and_a_timeline_in_lanes(client, ui_project,
                                                                   monkeypatch):
    import taskloom.app.ui.server as server

    monkeypatch.setattr(server, "FULL_LIMIT", 2)
    html = client.get(f"/runs/{ui_project.failed_run}").text
    assert 'id="graph-collapsed"' in html and "3 tasks in 3 layers: drawn compact" in html
    assert '<svg class="dag compact"' in html and 'class="node' not in html
    assert '<path class="cells s-failed" data-count="2"' in html  # transform, then load
    assert '<path class="cells s-completed" data-count="1"' in html
    assert _edges(html) == 2
    # the timeline (every attempt read) comes in its own request once the page shows
    assert f'hx-get="/runs/{ui_project.failed_run}/timeline" hx-trigger="load"' in html
    assert 'id="timeline-collapsed"' not in html
    timeline = client.get(f"/runs/{ui_project.failed_run}/timeline").text
    assert 'id="timeline-collapsed"' in timeline
    assert "3 attempts packed into 1 lane " in timeline
    assert '<path class="bar s-retrying" data-count="1"' in timeline
    assert 'id="task-transform"' in html  # the task list still has every detail
    assert client.get("/runs/nosuchrun/timeline").status_code == 404


def test_lanes_never_overlap_and_are_as_many_as_ran_at_once():
    from taskloom.app.ui.layout import Bar, lanes

    spans = [(0, 4), (1, 2), (2, 3), (3, 6), (5, 7), (2.5, 2.6)]
    bars = [Bar(f"t{i}", 1, "completed", a, b, False) for i, (a, b) in enumerate(spans)]
    lane = lanes(bars)
    assert max(lane) + 1 == 3  # (0,4), (2,3) and (2.5,2.6) ran at once
    for i, a in enumerate(bars):
        for j, b in enumerate(bars):
            if i < j and lane[i] == lane[j]:
                assert a.end <= b.start or b.end <= a.start
    assert lanes([]) == []


def test_a_finished_runs_page_is_drawn_again_when_its_record_changes(client, history,
                                                                     ui_project):
    run = ui_project.failed_run
    first = client.get(f"/runs/{run}").text
    assert "asked from a test" not in first and client.get(f"/runs/{run}").text == first
    history.record_action("retry", "a test", run_id=run, detail="asked from a test")
    assert "asked from a test" in client.get(f"/runs/{run}").text  # a new version
    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(ui_project.db)})
    try:
        child = engine.open_run(name="later", trigger="api", parent_id=run)
        child.add([Task("x", fn=lambda: 1)])
        child.start()
        child.wait()
        child.close()
    finally:
        engine.close()
    assert f'<a href="/runs/{child.id}">{child.id}</a>' in client.get(f"/runs/{run}").text


# -- signals and approvals ----------------------------------------------------------------------
@pytest.fixture
def waiting(tmp_path: Path) -> Iterator[WaitingRun]:
    sys.modules.pop("sig_steps", None)
    yield waiting_run(tmp_path)
    sys.modules.pop("sig_steps", None)


def _signal_client(found: WaitingRun, config: Path | None) -> Iterator[TestClient]:
    history = History.open(found.db)
    app = create_app(history, config_path=config, stream_seconds=0, poll=0.05)
    with TestClient(app) as c:
        yield c
    history.close()


def test_a_waiting_run_shows_its_wait_and_is_listed_and_filtered_as_waiting(waiting):
    for client in _signal_client(waiting, waiting.config):
        page = client.get(f"/runs/{waiting.id}")
        assert page.status_code == 200
        html = page.text
        assert 's-waiting">waiting' in html
        assert 'id="wait-approve"' in html and ">approval</code>" in html
        assert "approved: bool, note?: str" in html
        assert f'action="/runs/{waiting.id}/signal"' in html and 'name="payload"' in html
        # the stream of a waiting run goes on (it is not done)
        assert "event: done" not in client.get(f"/events/runs/{waiting.id}").text
        listed = client.get("/runs?status=waiting")
        assert f'href="/runs/{waiting.id}"' in listed.text and "1 waiting" in listed.text
        assert client.get("/runs?status=completed").text.count(f"/runs/{waiting.id}") == 0
        api = client.get(f"/api/runs/{waiting.id}/waits").json()
        assert [(w["task"], w["signal"]) for w in api["waits"]] == [("approve", "approval")]
        assert api["signals"] == []
        assert client.get("/api/runs?status=waiting").json()["total"] == 1


def test_a_signal_from_the_page_is_checked_recorded_and_continues_the_run(waiting):
    for client in _signal_client(waiting, waiting.config):
        csrf = _csrf(client)
        url = f"/runs/{waiting.id}/signal"
        assert client.post(url, data={"signal": "approval", "payload": "{}"}).status_code == 403
        bad_json = client.post(url, data={"csrf": csrf, "signal": "approval",
                                          "payload": "{approved"})
        assert bad_json.status_code == 400 and "payload: not JSON" in bad_json.text
        refused = client.post(url, data={"csrf": csrf, "signal": "approval",
                                         "payload": '{"approved": "yes"}'})
        assert refused.status_code == 409
        assert "payload refused: 'approved' must be bool" in refused.text
        sent = client.post(url, data={"csrf": csrf, "signal": "approval",
                                      "payload": '{"approved": true, "note": "ok"}'},
                           follow_redirects=False)
        assert sent.status_code == 303 and sent.headers["location"] == f"/runs/{waiting.id}"
        again = client.post(url, data={"csrf": csrf, "signal": "approval",
                                       "payload": '{"approved": false}'})
        assert again.status_code == 409 and "already received signal 'approval'" in again.text
        wait_for_status(waiting.db, waiting.id, "completed", 60)
        assert (waiting.config.parent / "ran.log").read_text().splitlines() == [
            "prepare", "publish draft True"]
        html = client.get(f"/runs/{waiting.id}").text
        assert 'id="wait-approve"' not in html
        signals = client.get(f"/api/runs/{waiting.id}/waits").json()["signals"]
        assert [(s["name"], s["payload"]) for s in signals] == [
            ("approval", {"approved": True, "note": "ok"})]
        assert signals[0]["sent_by"].startswith("taskloom ui (client testclient")
        actions = client.get(f"/api/runs/{waiting.id}").json()["actions"]
        signal_actions = [a for a in actions if a["action"] == "signal"]
        assert len(signal_actions) == 1
        assert "taskloom ui (client" in signal_actions[0]["requested_by"]
        assert "the run's process had exited: taskloom resume, pid" in \
            signal_actions[0]["detail"]


def test_a_signal_for_a_run_of_another_configuration_is_kept_and_says_how_to_resume(waiting):
    for client in _signal_client(waiting, None):
        csrf = _csrf(client)
        sent = client.post(f"/runs/{waiting.id}/signal", headers={"accept": "application/json"},
                           data={"csrf": csrf, "signal": "approval",
                                 "payload": '{"approved": true}'})
        assert sent.status_code == 200 and sent.json()["next"] == f"/runs/{waiting.id}"
        detail = next(a for a in client.get("/api/actions").json()
                  if a["action"] == "signal")["detail"]
        assert f"'taskloom resume {waiting.id}' continues it" in detail
        assert client.get(f"/api/runs/{waiting.id}").json()["status"] == "waiting"


def test_a_finished_run_takes_no_signal(client, ui_project):
    csrf = _csrf(client)
    answer = client.post(f"/runs/{ui_project.completed_run}/signal",
                         data={"csrf": csrf, "signal": "approval", "payload": "null"})
    assert answer.status_code == 409 and "waits for no signal" in answer.text
    missing = client.post(f"/runs/{ui_project.completed_run}/signal", data={"csrf": csrf})
    assert missing.status_code == 400 and "'signal' field" in missing.text


# -- what a run page's first view reads -----------------------------------------------------------
def test_latest_states_and_some_tasks_records_agree_with_the_whole_record(history, ui_project):
    for run in (ui_project.failed_run, ui_project.completed_run):
        whole = history.store.detail(run)
        assert history.states(run) == {t.name: t.state for t in whole.tasks}
        some = history.task_records(run, ["load", "transform"])
        assert [t.name for t in some] == ["load", "transform"]
        by_name = {t.name: t for t in whole.tasks}
        for t in some:
            assert (t.state, t.error, t.result_note) == (
                by_name[t.name].state, by_name[t.name].error, by_name[t.name].result_note)
            assert [(a.number, a.state, a.started, a.finished, a.traceback)
                    for a in t.attempts] == [(a.number, a.state, a.started, a.finished,
                                              a.traceback) for a in by_name[t.name].attempts]
        assert history.task_records(run, ["nosuchtask"]) == []


def test_runs_of_one_workflow_share_one_layout(client, ui_project, monkeypatch):
    import taskloom.app.ui.server as server

    laid_out: list[list[str]] = []
    real = server.layout

    def counted(names, deps, *rest):
        laid_out.append(list(names))
        return real(names, deps, *rest)

    monkeypatch.setattr(server, "layout", counted)
    for run in (ui_project.failed_run, ui_project.completed_run, ui_project.failed_run):
        assert client.get(f"/runs/{run}").status_code == 200
    assert laid_out == [["extract", "transform", "load"]]


def test_a_signal_reaches_a_run_still_going_in_its_process(tmp_path):
    from taskloom.api.signals import wait_for

    db = tmp_path / "live.db"
    engine = Engine(max_workers=1, store="sqlite",
                    store_options={"path": str(db), "flush_interval": 0.05})
    run = engine.open_run(name="approvals")
    run.add([wait_for("approve", "approval", schema={"approved": "bool"}),
             Task("publish", fn=lambda approve: approve["approved"],
                  dependencies=["approve"])])
    run.start()
    try:
        wait_for_status(db, run.id, "waiting")
        for client in _signal_client(WaitingRun(tmp_path / "none.toml", db, run.id), None):
            csrf = _csrf(client)
            sent = client.post(f"/runs/{run.id}/signal",
                               data={"csrf": csrf, "signal": "approval",
                                     "payload": '{"approved": true}'})
            assert sent.status_code == 200
            assert run.wait(60)
            summary = run.close()
            assert summary.status == "completed"
            detail = next(a for a in client.get("/api/actions").json()
                          if a["action"] == "signal")["detail"]
            assert "for approve" in detail and "process had exited" not in detail
    finally:
        engine.close()


def test_the_configurations_dependencies_are_read_while_the_dashboard_starts(ui_project):
    # The first run page asked for then finds them read (a big file takes tenths of a second).
    history = History.open(ui_project.db)
    try:
        read: list[str] = []
        real = history.dependencies

        def counting(config_path):
            read.append(config_path)
            return real(config_path)

        history.dependencies = counting  # type: ignore[method-assign]
        create_app(history, config_path=ui_project.config)
        wait_until(lambda: read, 10)
        assert read == [str(ui_project.config.resolve())]
        assert real(read[0])["transform"] == ["extract"]
    finally:
        history.close()
