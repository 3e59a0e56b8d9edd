"""Subflows: child runs linked to the parent, params down, outputs up, cancel, retry, resume."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom import Engine, Task, TaskState
from taskloom.api.subflows import subflow
from taskloom.api.workflows import run_flow
from taskloom.app.cli import main
from taskloom_std.stores.sqlite import SqliteStore


def _sqlite(tmp_path: Path, workers: int = 4) -> Engine:
    return Engine(max_workers=workers, store="sqlite",
                  store_options={"path": str(tmp_path / "sub.db")})


def test_two_levels_deep_params_down_outputs_up(tmp_path):
    def leaf_tasks():
        return [Task("double", fn=lambda context: context.params["n"] * 2)]

    def middle_tasks():
        return [Task("prep", fn=lambda context: context.params["n"] + 1),
                subflow("leaf", leaf_tasks, params={"n": "{params.n}"},
                        dependencies=["prep"]),
                Task("out", fn=lambda leaf, prep: leaf["double"] + prep,
                     dependencies=["leaf", "prep"])]

    engine = _sqlite(tmp_path)
    try:
        summary = engine.run([subflow("middle", middle_tasks, params={"n": "{params.n}"})],
                             params={"n": 5}, run_id="top")
        middle = engine.recorded("top.middle")
        leaf = engine.recorded("top.middle.leaf")
    finally:
        engine.close()
    assert summary.ok, summary.errors
    assert summary.results["middle"] == {"out": 16}
    assert middle.parent_id == "top" and leaf.parent_id == "top.middle"
    assert leaf.results == {"double": 10}


def test_cancelling_the_parent_cancels_children_two_levels_down(tmp_path):
    inside = threading.Event()

    def stuck(context):
        inside.set()
        context.token.wait(30)
        context.token.raise_if_cancelled()

    def leaf_tasks():
        return [Task("stuck", fn=stuck)]

    def middle_tasks():
        return [subflow("leaf", leaf_tasks)]

    engine = _sqlite(tmp_path)
    try:
        run = engine.open_run(run_id="top")
        run.add([subflow("middle", middle_tasks)])
        run.start()
        assert inside.wait(30)
        run.cancel()
        assert run.wait(30)
        run.drain(30)
        summary = run.close()
        middle = engine.recorded("top.middle")
        leaf = engine.recorded("top.middle.leaf")
    finally:
        engine.close()
    assert summary.status == "cancelled"
    assert middle.status == "cancelled" and leaf.status == "cancelled"


def test_a_failed_child_is_retried_keeping_what_completed(tmp_path):
    calls: list[str] = []

    def flaky():
        calls.append("flaky")
        if calls.count("flaky") == 1:
            raise RuntimeError("first try")
        return "ok"

    def child_tasks():
        return [Task("once", fn=lambda: calls.append("once") or "one"),
                Task("flaky", fn=flaky, dependencies=["once"])]

    engine = _sqlite(tmp_path)
    try:
        summary = engine.run([subflow("child", child_tasks, retry={"max_retries": 1,
                                                                   "base_delay": 0})],
                             run_id="p")
        child = engine.recorded("p.child")
    finally:
        engine.close()
    assert summary.ok, summary.errors
    assert calls == ["once", "flaky", "flaky"]
    assert child.status == "completed" and child.results == {"once": "one", "flaky": "ok"}
    task = summary.tasks[0]
    assert task.attempts == 2 and task.status is TaskState.COMPLETED


def test_a_failed_child_fails_the_task_naming_the_child():
    def child_tasks():
        return [Task("bad", fn=lambda: 1 / 0)]

    summary = run_flow(Engine(), [subflow("child", child_tasks)])
    assert summary.status == "failed"
    error = summary.errors["child"]
    assert error.startswith("child run ") and ".child failed (bad: division by zero)" in error


CHILD = textwrap.dedent('''
    [params]
    day = { type = "date" }

    [tasks.fetch]
    call = "sub_steps:fetch"

    [tasks.publish]
    call = "sub_steps:publish"
    depends_on = ["fetch"]
''')

PARENT = textwrap.dedent('''
    [params]
    day = { type = "date", default = "2026-12-01" }

    [tasks.child]
    subflow = { file = "child.toml", params = { day = "{params.day}" } }

    [tasks.after]
    call = "sub_steps:after"
    depends_on = ["child"]
''')

STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def _log(name):
        with open(HERE / "ran.log", "a") as f:
            f.write(name + "\\n")

    def fetch(context):
        _log("fetch")
        return context.params["day"].isoformat()

    def publish(fetch):
        _log("publish")
        if not (HERE / "fixed").exists():
            raise ValueError("not yet")
        return f"published {fetch}"

    def after(child):
        _log("after")
        return child
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "sub_steps.py").write_text(STEPS)
    (tmp_path / "child.toml").write_text(CHILD)
    (tmp_path / "taskloom.toml").write_text(PARENT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("sub_steps", None)
    yield tmp_path
    sys.modules.pop("sub_steps", None)


def test_toml_subflow_and_resuming_the_parent_resumes_the_child(project: Path):
    invoke = CliRunner().invoke
    result = invoke(main, ["run"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "child failed: SubflowFailed: child run " in result.output
    store = SqliteStore(project / ".taskloom" / "taskloom.db")
    try:
        parent = next(r for r in store.runs() if "." not in r.id)
        child = store.detail(f"{parent.id}.child")
        parent_of = store.summary(child.id)["parent_id"]
    finally:
        store.close()
    assert parent_of == parent.id and child.status == "failed"
    (project / "fixed").touch()
    resumed = invoke(main, ["resume", parent.id, "--retry-failed"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert (project / "ran.log").read_text().split() == ["fetch", "publish", "publish", "after"]


def test_validate_reports_a_missing_child_file(tmp_path):
    (tmp_path / "taskloom.toml").write_text('[tasks.c]\nsubflow = "nope.toml"\n')
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "taskloom.toml")])
    assert result.exit_code == 2
    assert "tasks.c.subflow: no such file: nope.toml" in result.output



def test_a_workflow_running_itself_stops_at_the_depth_limit():
    def itself():
        return [subflow("again", itself)]

    summary = run_flow(Engine(max_workers=2), [subflow("again", itself)])
    assert summary.status == "failed"
    assert "levels deep (at most 20): does a workflow run itself?" in summary.errors["again"]
