"""The ``taskloom`` executable: ``--version`` answered without click, the same words as the
click group's; any other command line is the click group's."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from taskloom.app.cli import main as group

COMMAND = [sys.executable, "-c", "from taskloom.app.command import main; main()"]


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=120)


def test_version_prints_what_the_click_group_prints():
    done = _command("--version")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == CliRunner().invoke(group, ["--version"]).output


def test_other_command_lines_go_to_the_click_group():
    helped = _command("--help")
    assert helped.returncode == 0
    assert "taskloom: run task workflows declared in TOML." in helped.stdout
    assert "Commands:" in helped.stdout and "  run " in helped.stdout
    unknown = _command("no-such-command")
    assert unknown.returncode == 2 and "No such command 'no-such-command'" in unknown.stderr
    both = _command("--version", "--log-level", "INFO")
    assert both.returncode == 0 and both.stdout.startswith("taskloom, version ")
