"""docs/plugins.md, followed literally: its files are written, its commands run, in order.

The files are the code blocks the guide introduces with a bold file name; the commands are
its ``shell`` blocks. A command the test does not know how to run fails the test, so the
guide and this test cannot drift apart.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskloom import load_plugins

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "plugins.md"

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_FILE = re.compile(r"\*\*`([^`]+)`\*\*\s*$")


def guide_steps(text):
    """``("file", path, content)`` and ``("shell", command)`` in the order of the guide."""
    steps = []
    for match in _BLOCK.finditer(text):
        lang, body = match.group(1), match.group(2)
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        named = _FILE.match(before.strip())
        if named:
            steps.append(("file", named.group(1), body))
        elif lang == "shell":
            steps.extend(("shell", line.strip()) for line in body.splitlines() if line.strip())
    return steps


def test_the_guide_has_the_steps():
    steps = guide_steps(GUIDE.read_text(encoding="utf-8"))
    files = [s[1] for s in steps if s[0] == "file"]
    assert files == [
        "taskloom-audit/taskloom_audit/__init__.py",
        "taskloom-audit/pyproject.toml",
        "run_audit.py",
        "taskloom-audit/tests/conftest.py",
        "taskloom-audit/tests/test_audit.py",
    ]
    commands = [s[1] for s in steps if s[0] == "shell"]
    assert commands == [
        "pip install ./taskloom-audit",
        "taskloom plugins",
        "python run_audit.py",
        "pytest taskloom-audit/tests",
    ]


def _taskloom_command():
    script = Path(sys.executable).with_name("taskloom")
    if script.exists():
        return [str(script)]
    found = shutil.which("taskloom")
    if found:
        return [found]
    return [sys.executable, "-c", "from taskloom.app.cli import main; main()"]


def _setuptools_major():
    if importlib.util.find_spec("setuptools") is None:
        return 0
    return int(importlib.metadata.version("setuptools").split(".")[0])


def _pip(*args):
    return [sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"]


@pytest.mark.slow
def test_following_the_guide_gives_a_working_installed_plugin(tmp_path):
    pytest.importorskip("pip")
    # Entry points are read once per process: read them now, so this process keeps its view
    # and the package installed below is only seen by the commands the guide runs.
    load_plugins(entry_points=True)
    env = {k: v for k, v in os.environ.items() if k != "TASKLOOM_DISABLE_PLUGINS"}
    env["COLUMNS"] = "250"  # a table row per plugin, not wrapped to a narrow terminal

    def run(cmd):
        result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
        return result

    # Without build isolation pip builds with the setuptools already installed here, when it
    # meets the guide's build requirement (setuptools>=77); otherwise pip fetches one.
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 77 else []
    installed = False
    outputs = {}
    try:
        for step in guide_steps(GUIDE.read_text(encoding="utf-8")):
            if step[0] == "file":
                path = tmp_path / step[1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(step[2], encoding="utf-8")
                continue
            command = step[1]
            argv = shlex.split(command)
            if argv[:2] == ["pip", "install"]:
                installed = True
                outputs[command] = run(_pip("install", *isolation, "--no-deps", *argv[2:]))
            elif argv[0] == "taskloom":
                outputs[command] = run([*_taskloom_command(), *argv[1:]])
            elif argv[0] == "python":
                outputs[command] = run([sys.executable, *argv[1:]])
            elif argv[0] == "pytest":
                outputs[command] = run([sys.executable, "-m", "pytest", "-q",
                                        "-p", "no:cacheprovider", *argv[1:]])
            else:
                pytest.fail(f"the guide runs a command this test does not know: {command}")

        # `taskloom plugins` lists the plugin, from its distribution.
        rows = outputs["taskloom plugins"].stdout.splitlines()
        assert [r for r in rows if re.search(r"\baudit\b", r) and "taskloom-audit" in r]
        plugins = {p["name"]: p for p in json.loads(
            run([*_taskloom_command(), "plugins", "--json"]).stdout
        )}
        audit = plugins["audit"]
        assert audit["distribution"] == "taskloom-audit"
        assert audit["error"] is None
        assert set(audit["hooks"]) == {
            "taskloom_register", "taskloom_configure", "taskloom_run_finish"
        }

        # The run called the plugin's hook: one audit line per task.
        assert "completed" in outputs["python run_audit.py"].stdout
        records = [json.loads(line) for line in
                   (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [(r["task"], r["status"], r["attempts"]) for r in records] == [
            ("extract", "completed", 1), ("double", "completed", 1)
        ]
        assert len({r["run"] for r in records}) == 1

        # The plugin's own tests, written with the kit, pass.
        assert "1 passed" in outputs["pytest taskloom-audit/tests"].stdout
    finally:
        if installed:
            removed = subprocess.run(_pip("uninstall", "-y", "taskloom-audit"), env=env,
                                     capture_output=True, text=True, timeout=300)
            assert removed.returncode == 0, removed.stderr
