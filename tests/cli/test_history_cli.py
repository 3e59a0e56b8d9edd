"""``taskloom runs``, ``show`` and ``resume`` on runs recorded by ``taskloom run``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom.app.cli import main
from taskloom_std.stores.sqlite import SqliteStore

HERE = Path(__file__).resolve().parent

STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def _log(name):
        with open(HERE / "executions.log", "a") as f:
            f.write(name + "\\n")

    def extract():
        _log("extract")
        return {"rows": [1, 2, 3]}

    def transform(extract):
        _log("transform")
        if not (HERE / "fixed").exists():
            raise ValueError("transform is broken")
        return sum(extract["rows"])

    def load(transform):
        _log("load")
        return transform * 2
''')

CONFIG = textwrap.dedent('''
    [taskloom]
    executor = { kind = "thread", max_workers = 2 }

    [tasks.extract]
    call = "steps:extract"

    [tasks.transform]
    call = "steps:transform"
    depends_on = ["extract"]

    [tasks.load]
    call = "steps:load"
    depends_on = ["transform"]
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("steps", None)
    yield tmp_path
    sys.modules.pop("steps", None)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _executions(folder: Path) -> Counter[str]:
    log = folder / "executions.log"
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _only_run(db: Path) -> str:
    store = SqliteStore(db)
    try:
        (record,) = store.runs()
    finally:
        store.close()
    return record.id


def test_runs_show_and_resume_a_failed_run(project):
    assert _invoke("run", "taskloom.toml").exit_code == 1
    db = project / ".taskloom" / "taskloom.db"
    assert db.is_file()
    run_id = _only_run(db)

    listed = _invoke("runs")
    assert listed.exit_code == 0
    assert run_id in listed.output and "failed" in listed.output
    assert "1 completed, 2 failed" in listed.output

    shown = _invoke("show", run_id[:6])
    assert shown.exit_code == 0
    assert "ValueError: transform is broken" in shown.output
    assert 'raise ValueError("transform is broken")' in shown.output  # the traceback
    assert "```mermaid" in shown.output and "section transform" in shown.output

    gantt = _invoke("show", run_id, "--gantt")
    lines = gantt.output.splitlines()
    assert lines[0] == "gantt" and "    dateFormat x" in lines
    assert any(line.startswith("    #1 failed :crit, ") for line in lines)
    assert any(line.startswith("    #1 completed :done, ") for line in lines)

    (project / "fixed").touch()
    kept = _invoke("resume", run_id)
    assert kept.exit_code == 1 and "transform is broken" in kept.output
    assert _executions(project) == {"extract": 1, "transform": 1}

    retried = _invoke("resume", run_id, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert f"run {run_id} completed" in retried.output
    assert _executions(project) == {"extract": 1, "transform": 2, "load": 1}
    assert "completed" in _invoke("runs").output

    done = _invoke("resume", run_id)
    assert done.exit_code == 0 and "already completed" in done.output


def test_db_option_and_bad_input(project, tmp_path_factory):
    missing = tmp_path_factory.mktemp("empty") / "none.db"
    result = _invoke("runs", "--db", str(missing))
    assert result.exit_code == 2 and "no run history" in result.output
    _invoke("run", "taskloom.toml")
    db = project / ".taskloom" / "taskloom.db"
    assert _invoke("runs", "--db", str(db)).exit_code == 0
    unknown = _invoke("show", "zzzz", "--db", str(db))
    assert unknown.exit_code == 2 and "no recorded run 'zzzz'" in unknown.output


def test_a_corrupt_database_is_reported_not_replaced(project):
    db = project / ".taskloom" / "taskloom.db"
    db.parent.mkdir()
    db.write_bytes(b"garbage" * 100)
    result = _invoke("runs")
    assert result.exit_code == 2 and "left untouched" in result.output
    assert db.read_bytes() == b"garbage" * 100


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and named pipes")
def test_kill_taskloom_run_then_resume_from_the_cli(tmp_path, monkeypatch):
    import crash_workflow

    shutil.copy(HERE / "crash_workflow.py", tmp_path / "crash_workflow.py")
    log = tmp_path / "executions.log"
    tables = ['[taskloom]', 'executor = { kind = "thread", max_workers = 2 }',
              'store_options = { durability = "safe" }']
    for name, deps in crash_workflow.graph().items():
        tables += [f"[tasks.{name}]", 'call = "crash_workflow:step"',
                   f"depends_on = {deps!r}".replace("'", '"'),
                   f"config = {{ log = {str(log)!r} }}".replace("'", '"')]
    (tmp_path / "taskloom.toml").write_text("\n".join(tables) + "\n")
    pipe = tmp_path / "gate.pipe"
    os.mkfifo(pipe)
    env = {**os.environ, "TASKLOOM_CRASH_BLOCK": str(pipe), "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from taskloom.app.cli import main; main()", "run", "taskloom.toml"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with open(pipe) as f:  # blocks until gate is running
            assert f.readline().strip() == "gate"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = _executions(tmp_path)
    run_id = _only_run(tmp_path / ".taskloom" / "taskloom.db")

    monkeypatch.chdir(tmp_path)
    assert "interrupted" in _invoke("runs").output
    store = SqliteStore(tmp_path / ".taskloom" / "taskloom.db")
    try:
        recorded = {n for n, (s, stored, *_) in store.outcomes(run_id).items()
                    if s == "completed" and stored}
    finally:
        store.close()
    result = _invoke("resume", run_id)
    assert result.exit_code == 0, result.output
    after = _executions(tmp_path)
    assert set(after) == set(crash_workflow.graph())
    assert all(after[n] == 1 for n in recorded)
    again = {n for n, c in after.items() if c > 1}
    assert "gate" in again and len(again) <= 2
    assert all(after[n] == 2 and before[n] == 1 for n in again)


def test_an_attempt_cut_off_by_a_kill_stays_running_not_the_next_state():
    from taskloom_std.stores.history import TaskRecord, _attempts

    rec = TaskRecord("t", "completed")
    rec.events = [("pending", 1.0), ("ready", 1.1), ("running", 1.2),  # killed here
                  ("pending", 9.0), ("ready", 9.1), ("running", 9.2), ("completed", 9.5)]
    first, second = _attempts(rec, {})
    assert (first.number, first.state, first.finished) == (1, "running", None)
    assert (second.number, second.state, second.finished) == (2, "completed", 9.5)


def test_the_cli_reads_history_through_the_history_component(project):
    """The commands name no store and no file: a plugin without a ``history`` component
    means no history, and the standard one's location is the store's own."""
    import ast

    from taskloom.app.cli import _common, history_cmd

    for module in (_common, history_cmd):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        text = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                and isinstance(n.value, str)]
        imports = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [t for t in text if "sqlite" in t or ".db" in t], module.__name__
        assert not [m for m in imports if m.startswith("taskloom_std")], module.__name__
    _invoke("run", "taskloom.toml")
    listed = _invoke("runs")
    assert listed.exit_code == 0
    assert str(project / ".taskloom" / "taskloom.db") in listed.output.replace("\n", "")
    env = {**os.environ, "TASKLOOM_DISABLE_PLUGINS": "stores"}
    result = CliRunner().invoke(main, ["runs"], env=env)
    assert result.exit_code == 2 and "keeps a run history" in result.output
