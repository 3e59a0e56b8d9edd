"""The taskloom command as a real process: the example end to end, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ETL = ROOT / "examples" / "etl" / "taskloom.toml"
CLI = [sys.executable, "-c", "from taskloom.app.cli import main; main()"]


def test_example_runs_prints_progress_and_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [*CLI, "run", str(ETL), "--store", "none", "--set", f'tasks.report.config.output="{out}"'],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "run " in proc.stdout and "completed: 9 completed" in proc.stdout
    trace = proc.stdout.split("trace:\n", 1)[1].splitlines()  # the compact trace, last
    assert trace[0].lstrip().startswith("run etl ")
    assert any(line.startswith("    task transform ") and line.endswith(" ok") for line in trace)
    # A person reads it: progress, a summary and the trace, well under 40 lines.
    assert len((proc.stdout + proc.stderr).splitlines()) < 40
    assert "flag_rejects │ rejected: extract_east line 92" in proc.stdout  # the conditional step ran
    report = out.read_text()
    assert "360 rows" in report and "2 rows rejected" in report


def test_first_ctrl_c_waits_second_cancels(tmp_path: Path) -> None:
    (tmp_path / "slow_steps.py").write_text(textwrap.dedent("""
        import sys

        def slow(context):
            print("slow started", flush=True)
            context.token.wait(60)
            return "stopped" if context.cancelled else "finished"

        def after(slow):
            return slow
    """))
    config = tmp_path / "taskloom.toml"
    config.write_text(textwrap.dedent("""
        [tasks.slow]
        call = "slow_steps:slow"
        [tasks.after]
        call = "slow_steps:after"
        depends_on = ["slow"]
    """))
    proc = subprocess.Popen([*CLI, "run", str(config), "--store", "none", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "slow started" in line:
                break
        proc.send_signal(signal.SIGINT)
        for line in proc.stdout:
            lines.append(line)
            if "Interrupted" in line:
                break
        assert "waiting for 1 running task(s)" in lines[-1]
        assert proc.poll() is None  # still waiting for the running task
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Cancelling running tasks" in rest
    assert "after cancelled" in rest and "slow cancelled" in rest


def _project(tmp_path: Path, otel: str = "") -> Path:
    (tmp_path / "steps.py").write_text("def hello():\n    return 1\n")
    (tmp_path / "taskloom.toml").write_text(otel + '[tasks.hello]\ncall = "steps:hello"\n')
    return tmp_path / "taskloom.toml"


def test_standard_otel_variables_work_without_a_config_section(tmp_path: Path) -> None:
    config = _project(tmp_path)
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"}
    proc = subprocess.run([*CLI, "run", str(config), "--store", "none"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert '"name": "task hello"' in proc.stdout


def test_an_unreachable_collector_delays_exit_a_bounded_time_and_is_reported_once(
    tmp_path: Path,
) -> None:
    import socket
    import time

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _project(tmp_path, "[taskloom.otel]\nexporter = \"otlp\"\nshutdown_timeout = 2\n\n")
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    started = time.monotonic()
    proc = subprocess.run([*CLI, "run", str(config), "--store", "none"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env=env)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert took < 10, f"exit took {took:.1f}s"
    assert proc.stderr.count("OpenTelemetry collector unreachable") == 1
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "Transient error" not in proc.stderr


def test_sigterm_stops_a_run_like_the_first_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "slow_steps.py").write_text(textwrap.dedent("""
        def slow(context):
            print("slow started", flush=True)
            context.token.wait(60)
            return "stopped" if context.cancelled else "finished"

        def after(slow):
            return slow
    """))
    config = tmp_path / "taskloom.toml"
    config.write_text('[tasks.slow]\ncall = "slow_steps:slow"\n'
                      '[tasks.after]\ncall = "slow_steps:after"\ndepends_on = ["slow"]\n')
    proc = subprocess.Popen([*CLI, "run", str(config), "--store", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if "slow started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            if "Interrupted" in line:
                break
        assert "Interrupted (SIGTERM): starting nothing new" in line
        assert proc.poll() is None  # waiting for the running task, not killed (rc 143)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Cancelling running tasks (SIGTERM)" in rest
    assert "interrupted by SIGTERM" in rest


def _run_steps(tmp_path: Path, steps: str, toml: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "steps.py").write_text(textwrap.dedent(steps))
    (tmp_path / "taskloom.toml").write_text(textwrap.dedent(toml))
    return subprocess.run([*CLI, "run", str(tmp_path / "taskloom.toml"), *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_progress_lines_describe_each_event_not_the_latest_state(tmp_path: Path) -> None:
    proc = _run_steps(tmp_path, """
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise RuntimeError(f"transient failure #{len(calls)}")
            return len(calls)
    """, """
        [tasks.flaky]
        call = "steps:flaky"
        retry = { max_retries = 3, base_delay = 0.01 }
    """, "--store", "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    retries = [line for line in lines if "retrying" in line]
    assert len(retries) == 2
    assert "after attempt 1: RuntimeError: transient failure #1 (at steps.py:" in retries[0]
    assert "after attempt 2: RuntimeError: transient failure #2 (at steps.py:" in retries[1]
    assert any(line.startswith("✓ flaky completed in ") for line in lines)


def test_a_failure_line_names_the_type_the_place_and_where_to_look(tmp_path: Path) -> None:
    proc = _run_steps(tmp_path, """
        def load():
            raise ValueError("bad row 7")
    """, """
        [tasks.load]
        call = "steps:load"
    """)
    assert proc.returncode == 1
    assert "✗ load failed: ValueError: bad row 7 (at steps.py:3 in load)" in proc.stdout
    run_id = proc.stdout.split("run ", 1)[1].split()[0]
    assert f"tracebacks and attempts: taskloom show {run_id}" in proc.stdout


def test_a_cache_hit_is_shown_as_one(tmp_path: Path) -> None:
    steps = """
        def compute():
            return 42
    """
    toml = """
        [tasks.compute]
        call = "steps:compute"
        cache = { ttl = 3600 }
    """
    first = _run_steps(tmp_path, steps, toml)
    second = _run_steps(tmp_path, steps, toml)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "✓ compute completed in " in first.stdout
    assert "✓ compute completed from the cache" in second.stdout


def test_log_level_from_the_command_line_and_from_the_configuration(tmp_path: Path) -> None:
    config = _project(tmp_path)
    base = [*CLI]
    flag = subprocess.run([*base, "--log-level", "INFO", "run", str(config), "--store", "none"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert flag.returncode == 0, flag.stderr
    assert "INFO taskloom.events: run " in flag.stderr
    quiet = subprocess.run([*base, "run", str(config), "--store", "none"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "taskloom.events" not in quiet.stderr
    configured = subprocess.run(
        [*base, "run", str(config), "--store", "none", "--set", 'taskloom.logging.level="INFO"'],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert configured.returncode == 0, configured.stderr
    assert "INFO taskloom.events: task hello: ready -> running" in configured.stderr
    bad = subprocess.run([*base, "--log-level", "LOUD", "run", str(config)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "log level 'LOUD'" in bad.stderr


def test_the_example_prints_under_40_lines_on_a_terminal(tmp_path: Path) -> None:
    import pty

    out = tmp_path / "report.md"
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CLI, "run", str(ETL), "--store", "none",
             "--set", f'tasks.report.config.output="{out}"'],
            stdin=secondary, stdout=secondary, stderr=secondary, cwd=tmp_path,
            env={**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"},
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(primary)
    import re

    raw = b"".join(chunks).decode("utf-8", "replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)  # colours, cursor moves
    assert "completed: 9 completed" in text and "trace:" in text
    # A terminal shows a live bar redrawn in place ("\r") and a line per captured output
    # line, the summary and the trace: every line the person is left with ends in "\n".
    assert raw.count("\n") < 40, text
    assert "report │ report written to" in text
    assert out.exists()
