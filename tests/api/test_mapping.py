"""Mapping: instances per element, the gather task, failures, retries, limits, resume."""

from __future__ import annotations

import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom import Engine, Task, TaskState
from taskloom.api.mapping import FailedElement, Map, MappedTask, map_task, parse_map
from taskloom.api.workflows import run_flow
from taskloom.app.cli import main
from taskloom.app.config import load_config
from taskloom.kernel.errors import ConfigError
from taskloom_std.stores.sqlite import SqliteStore


def test_a_thousand_elements_with_failures_and_retries():
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def square(n: int) -> int:
        with lock:
            attempts[n] = attempts.get(n, 0) + 1
            tries = attempts[n]
        if n % 100 == 7 and tries < 3:
            raise RuntimeError(f"flaky {n}")  # retried twice, then completes
        if n % 250 == 3:
            raise ValueError(f"broken {n}")  # fails after every retry
        return n * n

    def total(square: list[int]) -> int:
        return sum(square)

    def survivors(context, square: list) -> int:
        assert len(square) == 1000  # every element, in order, failed ones as placeholders
        return sum(1 for i in range(1000) if f"square[{i}]" in context.results
                   and square[i] == i * i)

    engine = Engine(max_workers=8)
    tasks = [
        Task("numbers", fn=lambda: list(range(1000))),
        map_task(Task("square", fn=square, retry={"max_retries": 2, "base_delay": 0}), "numbers",
                 as_="n"),
        Task("total", fn=total, dependencies=["square"]),
        Task("survivors", fn=survivors, dependencies=["square"], trigger_rule="all_done"),
    ]
    summary = run_flow(engine, tasks)
    by = {t.name: t for t in summary.tasks}
    assert len([n for n in by if n.startswith("square[")]) == 1000
    broken = [f"square[{n}]" for n in range(1000) if n % 250 == 3]
    assert all(by[n].status is TaskState.FAILED and by[n].attempts == 3 for n in broken)
    flaky = [f"square[{n}]" for n in range(1000) if n % 100 == 7]
    assert all(by[n].status is TaskState.COMPLETED and by[n].attempts == 3 for n in flaky)
    assert by["square"].status is TaskState.FAILED
    assert "4 of 1000 elements of 'square' did not complete: square[3] failed" in by[
        "square"].error
    assert by["total"].status is TaskState.FAILED  # all_success: fails naming the gather
    assert "square" in by["total"].error
    assert summary.results["survivors"] == 996  # all_done: runs, reads each element


def test_results_in_element_order_and_empty_list():
    def slow_first(item: str) -> str:
        return item.upper()

    engine = Engine(max_workers=4)
    for given, expected in ((["c", "a", "b"], ["C", "A", "B"]), ([], [])):
        tasks = [
            Task("items", fn=lambda given=given: given),
            map_task(Task("up", fn=slow_first), "items", as_="item"),
            Task("joined", fn=lambda up: up, dependencies=["up"]),
        ]
        summary = run_flow(engine, tasks)
        assert summary.ok, summary.errors
        assert summary.results["joined"] == expected
        assert len(summary.tasks) == 3 + len(given)


def test_map_over_a_parameter_named_by_a_key_and_limited_by_tags():
    running = []
    peak = []
    lock = threading.Lock()

    def fetch(user: dict, context) -> str:
        with lock:
            running.append(1)
            peak.append(len(running))
        try:
            return f"{user['id']}:{context.task.name}"
        finally:
            with lock:
                running.pop()

    engine = Engine(max_workers=8, limits={"api": 2})
    users = [{"id": f"u{i}"} for i in range(20)]
    tasks = [MappedTask("fetch", fn=fetch, tags=["api"], map=Map("users", "user", key="id"))]
    summary = run_flow(engine, tasks, params={"users": users})
    assert summary.ok
    assert summary.results["fetch"] == [f"u{i}:fetch[u{i}]" for i in range(20)]
    assert max(peak) <= 2


def test_upstream_failure_and_bad_elements_fail_the_gather_by_name():
    engine = Engine(max_workers=2)
    tasks = [Task("src", fn=lambda: 1 / 0), map_task(Task("m", fn=lambda src: src), "src")]
    summary = run_flow(engine, tasks)
    m = next(t for t in summary.tasks if t.name == "m")
    assert m.status is TaskState.FAILED and "src" in m.error
    tasks = [Task("src", fn=lambda: {"a": 1}), map_task(Task("m", fn=lambda src: src), "src")]
    m = next(t for t in run_flow(engine, tasks).tasks if t.name == "m")
    assert m.error == "task 'm' maps over 'src', which is dict, not a list"
    tasks = [Task("src", fn=lambda: [{"k": 1}, {"k": 1}]),
             map_task(Task("m", fn=lambda src: src), "src", key="k")]
    m = next(t for t in run_flow(engine, tasks).tasks if t.name == "m")
    assert "two elements are named 'm[1]'" in m.error
    tasks = [map_task(Task("m", fn=lambda nothing: nothing), "nothing")]
    m = next(t for t in run_flow(engine, tasks).tasks if t.name == "m")
    assert "neither a task of the workflow nor a run parameter" in m.error


def test_a_mapped_task_alone_on_an_engine_is_refused_with_a_reason():
    summary = Engine().run([map_task(Task("m", fn=lambda x: x), "x")])
    assert "run it with taskloom run, run_flow or a TaskManager" in summary.errors["m"]


def test_parse_map_and_body_checks():
    assert parse_map("t", "files") == Map("files")
    assert parse_map("t", {"over": "files", "as": "path", "key": "id"}) == Map(
        "files", "path", "id")
    with pytest.raises(ValueError, match=r"map.wat: unknown key"):
        parse_map("t", {"over": "f", "wat": 1})
    with pytest.raises(ValueError, match=r"map.as: expected a parameter name"):
        parse_map("t", {"over": "f", "as": "not valid"})
    with pytest.raises(ValueError, match="the body has no parameter 'path'"):
        MappedTask("t", fn=lambda other: other, map=Map("files", "path"))
    with pytest.raises(ValueError, match="parameter 'extra' of the body matches no dep"):
        MappedTask("t", fn=lambda path, extra: path, map=Map("files", "path"))


STEPS = textwrap.dedent('''
    from pathlib import Path

    HERE = Path(__file__).resolve().parent

    def files():
        return ["a.txt", "b.txt", "c.txt"]

    def size(files, context):
        with open(HERE / "ran.log", "a") as f:
            f.write(files + "\\n")
        if files == "b.txt" and not (HERE / "fixed").exists():
            raise ValueError("b is broken")
        return len(files) + len(context.params.get("suffix", ""))

    def report(size):
        return sum(size)
''')

CONFIG = textwrap.dedent('''
    [params]
    suffix = "xy"

    [tasks.files]
    call = "map_steps:files"

    [tasks.size]
    call = "map_steps:size"
    map = "files"

    [tasks.report]
    call = "map_steps:report"
    depends_on = ["size"]
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "map_steps.py").write_text(STEPS)
    (tmp_path / "taskloom.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("map_steps", None)
    yield tmp_path
    sys.modules.pop("map_steps", None)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_map_shows_instances_and_resume_reruns_only_the_failed_element(project: Path):
    result = _invoke("run", "-v")
    assert result.exit_code == 1, result.output
    assert "✓ size[0] completed" in result.output
    assert "✗ size[1] failed: ValueError: b is broken" in result.output
    assert "✗ size failed: MappedElementsFailed: 1 of 3 elements of 'size' did not " \
        "complete: size[1] failed" in result.output
    db = project / ".taskloom" / "taskloom.db"
    store = SqliteStore(db)
    try:
        (record,) = store.runs()
        names = {t.name: t.state for t in store.detail(record.id).tasks}
    finally:
        store.close()
    assert names["size[2]"] == "completed" and names["size[1]"] == "failed"
    (project / "fixed").touch()
    resumed = _invoke("resume", record.id, "--retry-failed")
    assert resumed.exit_code == 0, resumed.output
    ran = (project / "ran.log").read_text().split()  # the first three ran side by side
    assert sorted(ran[:3]) == ["a.txt", "b.txt", "c.txt"] and ran[3:] == ["b.txt"]
    shown = _invoke("show", record.id, "--json")
    assert '"size[1]"' in shown.output


def test_config_reports_bad_maps(tmp_path):
    (tmp_path / "taskloom.toml").write_text(textwrap.dedent('''
        [tasks.a]
        call = "os:getcwd"
        map = "fles"
        [tasks.files]
        call = "os:getcwd"
        [tasks.b]
        call = "os:getcwd"
        map = { over = "files", wat = 1 }
    '''))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "taskloom.toml")
    assert caught.value.problems == [
        "tasks.a.map: maps over 'fles', which is neither a task nor a parameter in [params]; "
        "did you mean 'files'?",
        "tasks.b.map.wat: unknown key; map takes over, as, key",
    ]


def test_graph_draws_a_mapped_task_as_one_node_with_its_count(tmp_path):
    path = tmp_path / "taskloom.toml"
    path.write_text(textwrap.dedent('''
        [params]
        regions = ["eu", "us", "ap"]
        [tasks.files]
        call = "os:getcwd"
        [tasks.size]
        call = "os:getcwd"
        map = { over = "files", as = "path" }
        [tasks.fetch]
        call = "os:getcwd"
        map = "regions"
        depends_on = ["size"]
    '''))
    text = _invoke("graph", str(path), "--format", "text")
    assert text.output.splitlines() == [
        "files", "size <- files  [map over files]", "fetch <- size  [map over regions x3]"]
    mermaid = _invoke("graph", str(path)).output
    assert '    fetch[["fetch (map over regions x3)"]]' in mermaid
    assert "    files --> size" in mermaid
    dot = _invoke("graph", str(path), "--format", "dot").output
    assert '"size" [shape=box3d, label="size (map over files)"];' in dot


def _with_failures(rule: str) -> dict:
    def body(n: int) -> int:
        if n == 2:
            raise ValueError("two is broken")
        return n * 10

    got: dict = {}

    def down(square):
        got["square"] = square
        return "ran"

    tasks = [
        Task("numbers", fn=lambda: [1, 2, 3]),
        map_task(Task("square", fn=body), "numbers", as_="n"),
        Task("down", fn=down, dependencies=["square"], trigger_rule=rule),
    ]
    summary = run_flow(Engine(max_workers=2), tasks)
    by = {t.name: t for t in summary.tasks}
    assert by["square"].status is TaskState.FAILED
    return {"down": by["down"], "got": got.get("square")}


@pytest.mark.parametrize("rule", ["all_done", "always", "one_failed"])
def test_permissive_rules_get_the_partial_list_with_placeholders(rule):
    out = _with_failures(rule)
    assert out["down"].status is TaskState.COMPLETED
    first, missing, last = out["got"]
    assert (first, last) == (10, 30)
    assert missing == FailedElement("square[1]", 1, "failed", "two is broken")
    assert not missing and [r for r in out["got"] if r] == [10, 30]


def test_all_success_fails_naming_the_gather_task():
    out = _with_failures("all_success")
    assert out["down"].status is TaskState.FAILED and out["got"] is None
    assert "'square'" in out["down"].error


def test_a_cancelled_element_is_a_placeholder_saying_so():
    def body(n: int, context) -> int:
        if n == 1:
            context.run.cancel_task(context.run.tasks["square[2]"])
        return n

    got: list = []
    tasks = [Task("numbers", fn=lambda: [1, 2, 3]),
             map_task(Task("square", fn=body, priority=9), "numbers", as_="n"),
             Task("down", fn=lambda square: got.append(square), dependencies=["square"],
                  trigger_rule="all_done")]
    run_flow(Engine(max_workers=1), tasks)
    (square,) = got
    assert square[:2] == [1, 2]  # one worker: the instances start in element order
    assert isinstance(square[2], FailedElement) and square[2].state == "cancelled"
    assert square[2].name == "square[2]" and square[2].index == 2
