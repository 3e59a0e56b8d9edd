"""The dashboard in a real browser: Debian's chromium driven by Playwright against a server
on loopback over a real run history. Every page renders, a running run's graph and timeline
change live, retry and cancel work from their buttons, and no page asks for anything outside
loopback. A screenshot of each page is saved in the test's temporary folder.

Without a browser these tests skip on a developer's machine and fail in CI (``CI`` set)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from ui_helpers import UiProject, live_run, waiting_run

from taskloom.app.ui.history import History
from taskloom.app.ui.server import create_app
from taskloom.testing import wait_until

CHROMIUM = os.environ.get("TASKLOOM_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc})")
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    manager = sync_playwright().start()
    try:
        try:
            b = manager.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Error as exc:
            _unavailable(f"chromium did not start: {exc}")
        yield b
        b.close()
    finally:
        manager.stop()


class Server:
    """The dashboard served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                timeout_graceful_shutdown=1, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="ui-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_until(lambda: self.server.started, 20)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    p.requested = []
    p.on("request", lambda r: p.requested.append(r.url))
    yield p
    context.close()
    outside = [u for u in p.requested if urlsplit(u).hostname not in LOOPBACK
               and not u.startswith(("data:", "about:"))]
    assert outside == [], f"the page asked for things outside loopback: {outside}"


@pytest.fixture
def history(ui_project: UiProject) -> Iterator[History]:
    h = History.open(ui_project.db)
    yield h
    h.close()


def _shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    assert (folder / f"{name}.png").stat().st_size > 1000


def test_every_page_renders_from_the_package_alone(page, history, ui_project, tmp_path):
    app = create_app(history, config_path=ui_project.config, poll=0.1)
    with Server(app) as base:
        page.goto(f"{base}/runs")
        assert page.evaluate("typeof htmx") == "object"
        assert page.locator("table.runs tbody tr").count() == 2
        assert page.locator(".counts .pill").count() == 2
        _shot(page, tmp_path, "runs")
        page.click(f"a[href='/runs/{ui_project.failed_run}']")
        page.wait_for_selector("svg.dag")
        assert page.locator("svg.dag g.node").count() == 3
        assert page.locator("svg.dag g.s-failed[data-task='transform']").count() == 1
        assert page.locator("svg.dag g.s-completed[data-task='extract']").count() == 1
        assert page.locator("svg.gantt rect.bar").count() == 3  # extract, transform twice
        assert "ValueError: transform is broken" in page.inner_text("details#task-transform")
        _shot(page, tmp_path, "run-failed")
        page.goto(f"{base}/runs/{ui_project.completed_run}")
        assert page.locator("svg.dag g.s-completed").count() == 3
        _shot(page, tmp_path, "run-completed")
        page.goto(f"{base}/workflow")
        assert page.locator("svg.dag g.node").count() == 3
        _shot(page, tmp_path, "workflow")
        page.goto(f"{base}/schedules")
        assert page.locator("ol.fires li").count() == 10
        _shot(page, tmp_path, "schedules")
        page.goto(f"{base}/runs?status=failed")
        assert page.locator("table.runs tbody tr").count() == 1


def test_a_running_runs_graph_and_timeline_change_live(page, ui_project, tmp_path):
    with live_run(ui_project.db) as live:
        history = History.open(ui_project.db)
        try:
            with Server(create_app(history, poll=0.05)) as base:
                page.goto(f"{base}/runs")
                page.wait_for_selector(f"tr.row-running[data-run='{live.id}']")
                page.goto(f"{base}/runs/{live.id}")
                page.wait_for_selector("svg.dag g.s-running[data-task='slow']")
                assert page.locator("svg.gantt rect.bar.open").count() == 1
                assert page.locator("svg.gantt line.now").count() == 1
                _shot(page, tmp_path, "run-live")
                live.finish()
                page.wait_for_selector("svg.dag g.s-completed[data-task='after']")
                page.wait_for_selector("#run-status:text('completed')")
                assert page.locator("svg.gantt rect.bar.open").count() == 0
                assert page.locator("svg.gantt rect.bar").count() == 3
                _shot(page, tmp_path, "run-live-finished")
        finally:
            history.close()


def test_the_cancel_button_cancels_a_running_run(page, ui_project, tmp_path):
    with live_run(ui_project.db) as live:
        history = History.open(ui_project.db)
        try:
            with Server(create_app(history, poll=0.05)) as base:
                page.goto(f"{base}/runs/{live.id}")
                page.click("#cancel")
                page.wait_for_selector("#run-status:text('cancelled')")
                assert page.locator("svg.dag g.s-cancelled[data-task='slow']").count() == 1
                assert "cancel" in page.inner_text("table.actions-log")
                _shot(page, tmp_path, "run-cancelled")
        finally:
            history.close()
    assert live.summary.status == "cancelled"


def test_the_retry_button_resumes_a_failed_run(page, history, ui_project, tmp_path):
    (ui_project.folder / "fixed").write_text("")
    with Server(create_app(history, config_path=ui_project.config, poll=0.05)) as base:
        page.goto(f"{base}/runs/{ui_project.failed_run}")
        page.click("#retry")
        page.wait_for_selector("table.actions-log")

        def completed() -> bool:
            page.reload()
            return page.inner_text("#run-status") == "completed"

        wait_until(completed, 30)
        assert page.locator("svg.dag g.s-completed").count() == 3
        _shot(page, tmp_path, "run-retried")


def test_with_a_token_the_browser_needs_it_once(page, history, ui_project):
    with Server(create_app(history, token="s3cret", poll=0.05)) as base:
        answer = page.goto(f"{base}/runs")
        assert answer is not None and answer.status == 401
        page.goto(f"{base}/runs?token=s3cret")
        assert page.evaluate("typeof htmx") == "object"  # the scripts passed the check
        page.goto(f"{base}/runs/{ui_project.completed_run}")
        assert page.locator("svg.dag g.node").count() == 3


def test_logs_show_as_text_and_parent_and_child_runs_link_each_other(page, ui_project,
                                                                      tmp_path):
    from taskloom import Engine, Task

    engine = Engine(max_workers=1, store="sqlite", store_options={"path": str(ui_project.db)})
    try:
        parent = engine.run([Task("plan", fn=lambda: 1)], name="parent", trigger="api")
        child = engine.open_run(name="child", trigger="api", parent_id=parent.id)
        child.add([Task("part", fn=lambda: 2)])
        child.start()
        child.wait()
        assert child.close().ok
    finally:
        engine.close()
    history = History.open(ui_project.db)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        with Server(create_app(history, poll=0.05)) as base:
            page.goto(f"{base}/runs/{ui_project.failed_run}")
            page.click("details#task-extract summary")
            log = page.inner_text("details#task-extract pre.log")
            assert log.startswith("<script>alert('x')</script> read 3 rows")
            assert dialogs == []  # the task's output is shown, never run
            assert page.locator("details#task-transform pre.log").count() == 2  # 2 attempts
            _shot(page, tmp_path, "run-logs")
            page.click("details#task-transform a.log-link >> nth=1")
            page.wait_for_url("**/log?task=transform&attempt=2")
            assert page.inner_text("body").startswith("summing 3 rows; xxx")

            page.goto(f"{base}/runs?trigger=api")
            assert page.locator("table.runs tbody tr").count() == 2
            page.click(f"a[href='/runs/{child.id}']")
            page.click("a.parent")
            page.wait_for_url(f"**/runs/{parent.id}")
            assert page.locator("table.children tbody tr").count() == 1
            _shot(page, tmp_path, "run-children")
            page.click(f"table.children a[href='/runs/{child.id}']")
            page.wait_for_url(f"**/runs/{child.id}")
            assert page.inner_text("a.parent") == parent.id
    finally:
        history.close()


def test_an_approval_sent_from_the_page_continues_a_waiting_run(page, tmp_path):
    sys.modules.pop("sig_steps", None)
    waiting = waiting_run(tmp_path)
    history = History.open(waiting.db)
    try:
        with Server(create_app(history, config_path=waiting.config, poll=0.05)) as base:
            page.goto(f"{base}/runs?status=waiting")
            page.click(f"a[href='/runs/{waiting.id}']")
            page.wait_for_selector("#run-status:text('waiting')")
            assert "approved: bool" in page.inner_text("#wait-approve")
            _shot(page, tmp_path, "run-waiting")
            page.fill("#wait-approve textarea[name=payload]", '{"approved": "yes"}')
            page.click("#wait-approve button.send-signal")
            page.wait_for_selector("text=payload refused: 'approved' must be bool")
            page.go_back()
            page.wait_for_selector("#wait-approve textarea[name=payload]")
            page.fill("#wait-approve textarea[name=payload]", '{"approved": true}')
            page.click("#wait-approve button.send-signal")
            page.wait_for_selector("#run-status:text('completed')", timeout=120_000)
            assert page.locator("#wait-approve").count() == 0
            assert "approval" in page.inner_text("table.signals")
            assert "signal" in page.inner_text("table.actions-log")
            _shot(page, tmp_path, "run-approved")
    finally:
        history.close()
        sys.modules.pop("sig_steps", None)
    assert (tmp_path / "ran.log").read_text().splitlines() == ["prepare", "publish draft True"]
