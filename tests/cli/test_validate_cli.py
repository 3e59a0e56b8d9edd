"""``taskloom validate`` and pre-run checks as a real process: exit statuses, what it says
about the file, every problem of a file at once, no traceback for inputs that used to crash."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]


def taskloom(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=env)


def write(folder: Path, text: str, name: str = "taskloom.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_no_file_found_is_exit_2_saying_where_it_looked(tmp_path: Path) -> None:
    proc = taskloom("validate", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("no configuration file found: looked for taskloom.toml, or "
                                  "pyproject.toml with a [tool.taskloom] table, in "
                                  f"{tmp_path.resolve()} and every folder above it")


def test_the_file_found_upward_is_named(tmp_path: Path) -> None:
    write(tmp_path, '[tasks.a]\ncall = "os:getcwd"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    proc = taskloom("validate", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{tmp_path.resolve() / 'taskloom.toml'}: OK (1 task(s), 0 schedule(s))\n"


def test_pyproject_tool_table_is_named(tmp_path: Path) -> None:
    write(tmp_path, """
        [project]
        name = "demo"

        [tool.taskloom]
        queue = "fifo"

        [tool.taskloom.tasks.a]
        call = "os:getcwd"

        [[tool.taskloom.schedules]]
        task = "a"
        cron = "0 3 * * *"
    """, "pyproject.toml")
    proc = taskloom("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("pyproject.toml [tool.taskloom]: OK (1 task(s), 1 schedule(s))\n")


def test_a_toml_syntax_error_shows_the_line_with_a_caret(tmp_path: Path) -> None:
    write(tmp_path, '[tasks.a]\ncall = "os:getcwd\n')
    proc = taskloom("validate", "taskloom.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "taskloom.toml: invalid TOML: Illegal character '\\n' (at line 2, column 18)",
        '  2 | call = "os:getcwd',
        "    |                  ^",
    ]


#: Inputs that crashed ``taskloom validate`` or passed it and crashed ``taskloom schedule``,
#: each with the problem now reported.
CRASHERS = {
    'trigger = 5': "schedules[0].trigger: expected a string, got an integer (5)",
    'cron = 5': "schedules[1].cron: expected a string, got an integer (5)",
    f'cron = "0 3 * * *"\ntimezone = "{"a" * 300}"':
        "schedules[2].timezone: unknown time zone 'aaaa",
    'cron = "0 3 * * *"\ntimezone = "Europe"':
        "schedules[3].timezone: unknown time zone 'Europe': expected an IANA name",
    'at = 0001-01-01T00:00:00+05:00':
        "schedules[4].at: must be between the years 2 and 9998",
    'interval = {days = 1e300}':
        "schedules[5].interval: must be at most 3162240000 seconds (100 years), got 8.64e+304",
    'interval = 1e300': "schedules[6].interval: must be at most 3162240000 seconds",
    'interval = 5\njitter = inf': "schedules[7].jitter: expected a finite number, got inf",
    'interval = nan': "schedules[8].interval: expected a finite number, got nan",
    'trigger = "cron"\noptions = {expression = "0 3 * * *", timezone = 5}':
        "schedules[9].trigger: ",
}


def test_inputs_that_crashed_are_all_reported_at_once(tmp_path: Path) -> None:
    entries = "\n".join(f'[[schedules]]\ntask = "a"\n{body}\n' for body in CRASHERS)
    write(tmp_path, f'[taskloom]\nwebhook = 5\n\n[tasks.a]\ncall = "os:getcwd"\n\n{entries}')
    proc = taskloom("validate", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = [line.removeprefix(f"{tmp_path.resolve() / 'taskloom.toml'}: ")
             for line in proc.stderr.splitlines()]
    for expected in CRASHERS.values():
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert "taskloom.webhook: plugin 'webhook' crashed while checking its configuration: " \
        "TypeError" in proc.stderr
    assert len(lines) == len(CRASHERS) + 2  # and the webhook section's type


def test_run_refuses_a_body_parameter_nothing_fills_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "ml_steps.py").write_text(textwrap.dedent("""
        from pathlib import Path

        def clean():
            Path("cleaned.txt").write_text("ran")
            return [1, 2]

        def train(cleaned):
            return len(cleaned)
    """))
    write(tmp_path, """
        [tasks.clean]
        call = "ml_steps:clean"
        [tasks.train]
        call = "ml_steps:train"
        depends_on = ["clean"]
    """)
    expected = ("tasks.train.call: parameter 'cleaned' of the body matches no dependency "
                "(depends on: clean) and has no default; did you mean 'clean'?")
    check = taskloom("validate", cwd=tmp_path)
    assert check.returncode == 2 and expected in check.stderr
    run = taskloom("run", "--store", "none", cwd=tmp_path)
    assert run.returncode == 2, run.stdout
    assert "task 'train': parameter 'cleaned' of the body matches no dependency" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "cleaned.txt").exists()


def test_a_hard_timeout_on_threads_is_refused_and_allowed_on_processes(tmp_path: Path) -> None:
    write(tmp_path, """
        [tasks.a]
        call = "os:getcwd"
        timeout = { hard = 1 }
    """)
    refused = taskloom("validate", cwd=tmp_path)
    assert refused.returncode == 2
    assert "tasks.a.timeout.hard: the 'thread' executor cannot stop a running body; " \
        "executors that can: 'process'" in refused.stderr
    allowed = taskloom("validate", "--set", 'taskloom.executor="process"', cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr


def test_a_typo_table_is_a_task_with_nothing_to_run(tmp_path: Path) -> None:
    write(tmp_path, """
        [tasks.publish]
        call = "os:getcwd"
        [tasks.pubish]
        retry = 5
    """)
    proc = taskloom("validate", "--set", "tasks.nosuch.retry=2", cwd=tmp_path)
    assert proc.returncode == 2
    assert 'tasks.pubish: no call = "module:function": a task needs something to run; did you ' \
        "mean 'publish'?" in proc.stderr
    assert "tasks.nosuch: no call = \"module:function\": a task needs something to run (the " \
        "table was made by --set tasks.nosuch.retry=2)" in proc.stderr


def test_schedule_refuses_what_used_to_pass_validation_and_crash_it(tmp_path: Path) -> None:
    write(tmp_path, """
        [tasks.a]
        call = "os:getcwd"
        [[schedules]]
        task = "a"
        interval = 1e300
        [[schedules]]
        task = "a"
        interval = 5
        jitter = inf
    """)
    proc = taskloom("schedule", "--store", "none", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr
    assert "schedules[0].interval: must be at most 3162240000 seconds (100 years), got 1e+300" \
        in proc.stderr
    assert "schedules[1].jitter: expected a finite number, got inf" in proc.stderr
