"""The taskloom command through click's runner: exit statuses, messages, help."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskloom import __version__
from taskloom.app.cli import main

ETL = Path(__file__).resolve().parents[2] / "examples" / "etl" / "taskloom.toml"
QUIET = ["--store", "none", "--set", 'taskloom.otel.exporter="none"']


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cli_steps.py").write_text(textwrap.dedent("""
        def ok():
            return 1
        def double(ok):
            return ok * 2
        def boom():
            raise RuntimeError("broken on purpose")
        def never(context):
            return False
    """))
    path = tmp_path / "taskloom.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_run_the_example_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    result = invoke("run", str(ETL), "-v", *QUIET, "--set", f'tasks.report.config.output="{out}"')
    assert result.exit_code == 0, result.output
    assert "✓ validate completed" in result.output
    assert "completed: 9 completed" in result.output
    assert out.read_text().startswith("# Sales report")


def test_exit_1_when_a_task_fails_and_conditions_skip(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [tasks.ok]
        call = "cli_steps:ok"
        [tasks.double]
        call = "cli_steps:double"
        depends_on = ["ok"]
        when = "cli_steps:never"
        [tasks.broken]
        call = "cli_steps:boom"
    """)
    result = invoke("run", str(path), "--store", "none")
    assert result.exit_code == 1
    assert "broken failed: RuntimeError: broken on purpose (at cli_steps.py:" in result.output
    assert "↷ double skipped" in result.output
    result = invoke("run", str(path), "--store", "none", "--task", "ok")
    assert result.exit_code == 0
    assert "completed: 1 completed" in result.output


def test_bad_input_exits_2_listing_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [taskloom]
        queue = "prio"
        [tasks.transform]
        depends_on = ["extrct"]
        [tasks.load]
        call = "cli_steps:nothere"
    """)
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{path}: taskloom.queue: no queue strategy 'prio'; registered:")
    assert f"{path}: tasks.transform.depends_on[0]: unknown task 'extrct'" in lines
    result = invoke("run", str(path))
    assert result.exit_code == 2
    fixed = write(tmp_path, '[tasks.load]\ncall = "cli_steps:nothere"\n')
    result = invoke("run", str(fixed))
    assert result.exit_code == 2
    assert "cannot import 'cli_steps:nothere' for task 'load'" in result.output
    assert invoke("run", str(tmp_path / "missing.toml")).exit_code == 2


def test_validate_ok_and_set_overrides() -> None:
    result = invoke("validate", str(ETL))
    assert result.exit_code == 0
    assert "OK (9 task(s), 1 schedule(s))" in result.output
    result = invoke("validate", str(ETL), "--set", "taskloom.queue=prio")
    assert result.exit_code == 2
    assert "(from --set taskloom.queue=prio)" in result.output


def test_plugins_json_lists_components_and_hooks() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0
    records = {r["name"]: r for r in json.loads(result.output)}
    assert records["queues"]["components"]["queue"][:2] == ["deadline", "fair"]
    assert records["queues"]["status"] == "loaded"
    assert "taskloom_register" in records["executors"]["hooks"]
    assert records["queues"]["distribution"] == "taskloom"
    table = invoke("plugins")
    assert table.exit_code == 0 and "queues" in table.output


def test_plugins_shows_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_DISABLE_PLUGINS", "scheduling")
    records = {r["name"]: r for r in json.loads(invoke("plugins", "--json").output)}
    assert records["scheduling"]["status"] == "disabled"


@pytest.mark.parametrize("command", ["run", "validate", "graph", "plugins"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"taskloom {command}" in result.output


def test_version() -> None:
    assert invoke("--version").output.strip() == f"taskloom, version {__version__}"
