"""A real run history for the dashboard's tests: runs recorded by ``taskloom run`` into a
SQLite store, and a run kept going in this process until it is cancelled."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from taskloom import Engine, Task
from taskloom.app.cli import main
from taskloom.testing import wait_until

STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def extract():
        print("<script>alert('x')</script> read 3 rows")
        return {"rows": [1, 2, 3]}

    def transform(extract):
        print("summing", len(extract["rows"]), "rows;", "x" * 500)
        if not (HERE / "fixed").exists():
            raise ValueError("transform is broken")
        return sum(extract["rows"])

    def load(transform):
        return {"total": transform * 2}
''')

CONFIG = textwrap.dedent('''
    [taskloom]
    executor = { kind = "thread", max_workers = 2 }

    [tasks.extract]
    call = "uisteps:extract"
    description = "Read the rows"
    tags = ["io"]

    [tasks.transform]
    call = "uisteps:transform"
    depends_on = ["extract"]
    retry = { max_retries = 1, base_delay = 0.01 }

    [tasks.load]
    call = "uisteps:load"
    depends_on = ["transform"]

    [[schedules]]
    task = "load"
    id = "nightly"
    cron = "30 2 * * *"
    timezone = "Europe/Berlin"
''')


@dataclass
class UiProject:
    folder: Path
    config: Path
    db: Path
    failed_run: str
    completed_run: str


def _run(config: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(config)], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output


@pytest.fixture
def ui_project(tmp_path: Path) -> Iterator[UiProject]:
    """A failed run (transform broken), then a completed one, recorded by ``taskloom run``."""
    from taskloom.app.ui.history import open_store

    (tmp_path / "uisteps.py").write_text(STEPS)
    config = tmp_path / "taskloom.toml"
    config.write_text(CONFIG)
    sys.modules.pop("uisteps", None)
    _run(config)
    (tmp_path / "fixed").write_text("")
    sys.modules.pop("uisteps", None)
    _run(config)
    (tmp_path / "fixed").unlink()
    db = tmp_path / ".taskloom" / "taskloom.db"
    store = open_store(db)
    by_status: dict[str, str] = {}
    try:
        def both_recorded() -> bool:  # each run's store commits its end in the background
            by_status.clear()
            by_status.update({r.status: r.id for r in store.runs_page(10, 0).runs})
            return set(by_status) == {"failed", "completed"}

        wait_until(both_recorded, 30)
    finally:
        store.close()
    yield UiProject(tmp_path, config, db, by_status["failed"], by_status["completed"])
    sys.modules.pop("uisteps", None)


@dataclass
class LiveRun:
    id: str
    engine: Any
    run: Any
    release: threading.Event
    summary: Any = None

    closer: threading.Thread | None = None

    def close_when_done(self) -> None:
        """Closes the run once nothing is left to do (it is then recorded as finished), as
        ``taskloom run`` does: after ``slow`` returns or the run is cancelled."""
        self.run.wait(60)
        self.summary = self.run.close()
        self.engine.store.flush()

    def finish(self) -> None:
        """Let ``slow`` return and wait until the run is closed."""
        self.release.set()
        assert self.closer is not None
        self.closer.join(60)


@contextmanager
def live_run(db: Path, name: str = "live") -> Iterator[LiveRun]:
    """A run in progress in this process, recorded in ``db``: ``quick`` completes, ``slow``
    waits for its token (a cancel) or ``release``, ``after`` depends on ``slow``."""
    engine = Engine(max_workers=2, store="sqlite",
                    store_options={"path": str(db), "flush_interval": 0.05})
    release = threading.Event()
    started = threading.Event()

    def slow(context: Any) -> str:
        started.set()
        while not release.is_set() and not context.token.wait(0.02):
            pass
        return "slow done"

    run = engine.open_run(name=name)
    run.add([Task("quick", fn=lambda: 1), Task("slow", fn=slow),
             Task("after", fn=lambda slow: slow, dependencies=["slow"])])
    run.start()
    assert started.wait(10)
    engine.store.flush()
    live = LiveRun(run.id, engine, run, release)
    live.closer = threading.Thread(target=live.close_when_done, name="live-run-closer")
    live.closer.start()
    try:
        yield live
    finally:
        live.finish()
        engine.close()


def wait_for_status(db: Path, run_id: str, status: str, timeout: float = 30.0) -> None:
    from taskloom.app.ui.history import open_store

    store = open_store(db)
    try:
        def reached() -> bool:
            record = store.run(run_id)
            return record is not None and record.status == status

        wait_until(reached, timeout)
    finally:
        store.close()


SIGNAL_STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def _log(text):
        with open(HERE / "ran.log", "a") as f:
            f.write(text + "\\n")

    def prepare():
        _log("prepare")
        return "draft"

    def publish(prepare, approve):
        _log(f"publish {prepare} {approve['approved']}")
        return "published"
''')

SIGNAL_CONFIG = textwrap.dedent('''
    [tasks.prepare]
    call = "sig_steps:prepare"

    [tasks.approve]
    wait_for = "approval"
    payload_schema = { approved = "bool", "note?" = "str" }
    depends_on = ["prepare"]

    [tasks.publish]
    call = "sig_steps:publish"
    depends_on = ["prepare", "approve"]
''')


@dataclass
class WaitingRun:
    config: Path
    db: Path
    id: str


def _recorded_status(db: Path) -> tuple[str, str] | None:
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            rows = conn.execute("SELECT id, status FROM runs").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:  # the other process is creating the schema
        return None
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def waiting_run(folder: Path) -> WaitingRun:
    """A run of ``SIGNAL_CONFIG`` recorded ``waiting`` for its approval by ``taskloom run``,
    whose process was then killed: no live process holds it."""
    (folder / "sig_steps.py").write_text(SIGNAL_STEPS)
    config = folder / "taskloom.toml"
    config.write_text(SIGNAL_CONFIG)
    db = folder / ".taskloom" / "taskloom.db"
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from taskloom.app.cli import main; main()", "run"],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: proc.poll() is not None
                   or (_recorded_status(db) or ("", ""))[1] == "waiting", 60)
        assert proc.poll() is None, "taskloom run ended before its step waited"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = _recorded_status(db)
    assert found is not None and found[1] == "waiting"
    return WaitingRun(config, db, found[0])
