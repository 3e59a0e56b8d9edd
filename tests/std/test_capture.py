"""The capture plugin: each attempt's prints and log records, kept apart and capped."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taskloom import ConfigError, Engine, Task, hookimpl, load_plugins

CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]


class Outputs:
    """Collects attempt.output as observers see it."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], str | None] = {}

    @hookimpl
    def taskloom_attempt_finish(self, task, attempt, error, run):
        self.seen[(task.name, attempt.number)] = attempt.output


def _engine(capture: dict, **kwargs) -> tuple[Engine, Outputs]:
    outputs = Outputs()
    plugins = load_plugins(config={"capture": capture}, plugins=[outputs])
    return Engine(plugins=plugins, **kwargs), outputs


def test_prints_and_log_records_of_an_attempt_are_kept_and_not_echoed(capsys):
    def body():
        print("hello from the body")
        logging.getLogger("etl").warning("two rows dropped")
        return 1

    engine, outputs = _engine({"enabled": True, "echo": False})
    assert engine.run([Task("load", fn=body)]).ok
    text = outputs.seen[("load", 1)]
    assert text == "hello from the body\nWARNING etl: two rows dropped\n"
    assert "hello from the body" not in capsys.readouterr().out


def test_echo_writes_through_as_well(capsys):
    engine, outputs = _engine({"enabled": True})
    assert engine.run([Task("say", fn=lambda: print("spoken"))]).ok
    assert outputs.seen[("say", 1)] == "spoken\n"
    assert "spoken" in capsys.readouterr().out


def test_off_by_default_in_the_library():
    outputs = Outputs()
    engine = Engine(plugins=load_plugins(plugins=[outputs]))
    assert engine.run([Task("say", fn=lambda: print("spoken"))]).ok
    assert outputs.seen[("say", 1)] is None


def test_each_attempt_has_its_own_text_across_retries():
    calls = []

    def flaky():
        calls.append(1)
        print(f"attempt {len(calls)}")
        if len(calls) < 3:
            raise RuntimeError("again")

    engine, outputs = _engine({"enabled": True, "echo": False})
    assert engine.run([Task("flaky", fn=flaky, retry=3)]).ok
    assert [outputs.seen[("flaky", n)] for n in (1, 2, 3)] == [
        "attempt 1\n", "attempt 2\n", "attempt 3\n"]


def test_concurrent_attempts_never_mix(tmp_path):
    def talker(name):
        def body():
            for i in range(200):
                print(f"{name} {i}")
        return body

    engine, outputs = _engine({"enabled": True, "echo": False}, max_workers=4)
    tasks = [Task(f"t{n}", fn=talker(f"t{n}")) for n in range(8)]
    assert engine.run(tasks).ok
    for n in range(8):
        assert outputs.seen[(f"t{n}", 1)] == "".join(f"t{n} {i}\n" for i in range(200))


def test_asyncio_bodies_on_one_loop_keep_their_own_text():
    async def talker(name):
        for i in range(20):
            print(f"{name} {i}")
            await asyncio.sleep(0)

    engine, outputs = _engine({"enabled": True, "echo": False}, executor="asyncio")
    tasks = [Task(f"a{n}", fn=lambda n=n: talker(f"a{n}")) for n in range(5)]
    assert engine.run(tasks).ok
    for n in range(5):
        assert outputs.seen[(f"a{n}", 1)] == "".join(f"a{n} {i}\n" for i in range(20))


def test_text_over_the_limit_is_cut_and_says_so():
    engine, outputs = _engine({"enabled": True, "echo": False, "limit": 10})
    assert engine.run([Task("chatty", fn=lambda: print("x" * 25))]).ok
    assert outputs.seen[("chatty", 1)] == (
        "xxxxxxxxxx\n[16 more characters not kept: capture limit 10]\n")


@pytest.mark.parametrize("section, problem", [
    ({"enabled": "yes"}, "capture.enabled"),
    ({"limit": -1}, "capture.limit"),
    ({"limit": 1.5}, "capture.limit"),
    ({"echo": 1}, "capture.echo"),
])
def test_bad_settings_are_configuration_errors(section, problem):
    with pytest.raises(ConfigError, match=problem):
        load_plugins(config={"capture": section})


def test_sqlite_store_keeps_it_and_taskloom_logs_prints_it(tmp_path: Path):
    (tmp_path / "steps.py").write_text(textwrap.dedent("""
        import logging

        def extract():
            print("read 3 rows")
            return [1, 2, 3]

        def report(extract):
            logging.getLogger("etl").warning("report has %d rows", len(extract))
            print("report written")
    """))
    (tmp_path / "taskloom.toml").write_text(textwrap.dedent("""
        [tasks.extract]
        call = "steps:extract"
        [tasks.report]
        call = "steps:report"
        depends_on = ["extract"]
    """))
    run = subprocess.run([*CLI, "run"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    # The run's own output shows each task's lines, prefixed, in one piece.
    assert "extract │ read 3 rows" in run.stdout
    assert "report │ WARNING etl: report has 3 rows" in run.stdout
    run_id = run.stdout.split("run ", 1)[1].split()[0]
    db = tmp_path / ".taskloom" / "taskloom.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 2
    logs = subprocess.run([*CLI, "logs", run_id, "report"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines()[1:] == ["WARNING etl: report has 3 rows", "report written"]
    every = subprocess.run([*CLI, "logs", run_id[:6]], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
    assert "── extract attempt 1" in every.stdout and "── report attempt 1" in every.stdout
    missing = subprocess.run([*CLI, "logs", run_id, "nosuch"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=60)
    assert missing.returncode == 2 and "no task 'nosuch'" in missing.stderr


def test_complete_lines_reach_taskloom_attempt_output_as_they_are_written():
    seen: list[tuple[str, int, str, list[str]]] = []
    written: list[str] = []

    class Lines:
        @hookimpl
        def taskloom_attempt_output(self, task, attempt, text, run):
            seen.append((task.name, attempt.number, text, list(written)))

    def body():
        sys.stdout.write("first ")
        written.append("a")
        print("line")
        written.append("b")
        print("second line\nthird line")
        written.append("c")
        sys.stdout.write("no newline at the end")

    plugins = load_plugins(config={"capture": {"enabled": True, "echo": False}},
                           plugins=[Lines()])
    assert Engine(plugins=plugins).run([Task("talk", fn=body)]).ok
    # Each complete line is passed on while the body is still writing (before the next write).
    assert seen == [
        ("talk", 1, "first line\n", ["a"]),
        ("talk", 1, "second line\n", ["a", "b"]),  # print writes the text, then its newline
        ("talk", 1, "third line\n", ["a", "b"]),
        ("talk", 1, "no newline at the end\n", ["a", "b", "c"]),
    ]


# Bodies for the process executor live at module level so its worker processes import them.
def chatty_in_a_worker(x):
    import os

    print(f"worker {os.getpid()} got {x}")
    sys.stderr.write("a warning on stderr\n")
    logging.getLogger("etl").warning("kept: %d", x)
    logging.getLogger("etl").debug("below the level: not kept")
    return x + 1


def zero():
    return 0


def failing_in_a_worker():
    print("about to fail")
    raise ValueError("bad row")


def flooding_in_a_worker():
    print("x" * 500)


def test_process_executor_bodies_are_captured_per_attempt(capsys):
    engine, outputs = _engine({"enabled": True, "echo": False}, executor="process",
                              max_workers=2)
    summary = engine.run([Task("x", fn=zero),
                          Task("a", fn=chatty_in_a_worker, dependencies=["x"]),
                          Task("boom", fn=failing_in_a_worker)], name="procs")
    assert summary.status == "failed"
    text = outputs.seen[("a", 1)]
    assert text is not None
    first, *rest = text.splitlines()
    assert first.startswith("worker ") and first.endswith(" got 0")
    assert int(first.split()[1]) != os.getpid()  # printed in another process
    assert rest == ["a warning on stderr", "WARNING etl: kept: 0"]
    assert outputs.seen[("boom", 1)] == "about to fail\n"  # a failed attempt's text is kept
    assert "about to fail" not in capsys.readouterr().out


def test_process_executor_output_over_the_limit_is_cut_and_says_so():
    engine, outputs = _engine({"enabled": True, "echo": False, "limit": 100},
                              executor="process", max_workers=1)
    assert engine.run([Task("flood", fn=flooding_in_a_worker)]).ok
    assert outputs.seen[("flood", 1)] == (
        "x" * 100 + "\n[401 more characters not kept: capture limit 100]\n")


def test_process_executor_output_reaches_taskloom_logs(tmp_path: Path):
    (tmp_path / "steps.py").write_text(textwrap.dedent("""
        import logging, os

        def extract():
            print(f"read 3 rows in {os.getpid()}")
            logging.getLogger("etl").warning("one row skipped")
            return [1, 2, 3]
    """))
    (tmp_path / "taskloom.toml").write_text(textwrap.dedent("""
        [taskloom]
        executor = { kind = "process", max_workers = 1 }
        [tasks.extract]
        call = "steps:extract"
    """))
    run = subprocess.run([*CLI, "run"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "extract │ read 3 rows in " in run.stdout
    run_id = run.stdout.split("run ", 1)[1].split()[0]
    logs = subprocess.run([*CLI, "logs", run_id, "extract"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert logs.returncode == 0, logs.stderr
    printed, logged = logs.stdout.splitlines()[1:]
    assert printed.startswith("read 3 rows in ") and logged == "WARNING etl: one row skipped"
