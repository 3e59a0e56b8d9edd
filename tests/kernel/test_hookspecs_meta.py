"""Every hook is documented and tested: the suite fails for a hook that is neither, whether
the core declares it or a standard plugin does (``taskloom_addhooks``)."""

import ast
import functools
import inspect
from pathlib import Path

import pytest

from taskloom import load_plugins
from taskloom.api.hookref import hook_specs

TESTS = Path(__file__).resolve().parents[1]
#: Files that list every hook by construction; they do not count as exercising one.
META = {"test_hookspecs_meta.py", "test_hook_signatures.py", "test_docs.py"}

SPECS = {spec.name: spec.function for spec in hook_specs(load_plugins())}


def test_hooks_are_found():
    assert len(SPECS) >= 10
    assert "taskloom_task_transition" in SPECS
    assert "taskloom_circuit_change" in SPECS  # declared by the circuit_breaker plugin


@pytest.mark.parametrize("name", sorted(SPECS))
def test_docstring_says_when_what_and_return(name):
    doc = inspect.getdoc(SPECS[name]) or ""
    summary = doc.split("\n", 1)[0]
    assert summary.strip().endswith("."), f"{name}: the first line is a one-sentence summary"
    assert "When:" in doc, f"{name}: the docstring must say when the hook is called ('When:')"
    assert "Return:" in doc, f"{name}: the docstring must say what a return means ('Return:')"
    for arg in inspect.signature(SPECS[name]).parameters:
        assert f"``{arg}``" in doc, f"{name}: argument {arg!r} is not described"


def _names_used(path):
    """Identifiers, attribute names and string constants in a test module (not comments)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            used.add(node.name)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            used.add(node.value)
    return used


@functools.cache
def _exercised():
    found = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.name in META:
            continue
        for hook in _names_used(path) & set(SPECS):
            found.setdefault(hook, []).append(path.name)
    return found


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_has_a_test(name):
    assert name in _exercised(), (
        f"no test implements, calls or checks {name}: add one to tests/"
    )
