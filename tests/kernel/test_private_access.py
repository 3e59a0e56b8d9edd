"""Plugins use the public task/attempt/run API: no file under plugins/ or contrib/ reads an
underscore attribute of a core object.

The rule: collect every private name the core defines (``__slots__`` entries, ``self._x``
assignments, ``_x`` methods and class attributes, module-level ``_x``). A plugin reading
``obj._x`` with such a name, on anything but ``self``/``cls``, or importing a private name
from ``taskloom``, fails. A plugin's own private attributes are free to use any other
name; one that happens to share a core private name must be renamed, which keeps the rule
free of type inference and its blind spots.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core" / "taskloom"
SCANNED = (ROOT / "plugins", ROOT / "contrib")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def core_private_names() -> set[str]:
    names: set[str] = set()
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in cls.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        if isinstance(t, ast.Name):
                            names.add(t.id)
                            if t.id == "__slots__" and node.value is not None:
                                names.update(
                                    c.value for c in ast.walk(node.value)
                                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                                )
            for node in ast.walk(cls):
                if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                        and isinstance(node.value, ast.Name) and node.value.id == "self"):
                    names.add(node.attr)
    return {n for n in names if _private(n)}


def violations(source: str, core_names: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in core_names:
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in core_names
              and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))):
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.ImportFrom) and node.module
              and node.module.split(".")[0] == "taskloom"):
            found += [(node.lineno, f"from {node.module} import {a.name}")
                      for a in node.names if _private(a.name)]
    return found


def test_the_rule_knows_the_core_internals():
    names = core_private_names()
    assert {"_plan", "_status", "_attempt", "_queue", "_inflight", "_started",
            "_cancelling", "_idle", "_run", "_dependents"} <= names


def test_the_rule_catches_reads_and_spares_own_attributes():
    names = {"_plan", "_queue", "_signature"}
    source = (
        "from taskloom.kernel.engine import _signature\n"
        "def f(attempt, run):\n"
        "    return attempt.task._plan, len(run._queue), attempt._mine\n"
        "x = getattr(task, '_plan', None)\n"
        "class W:\n"
        "    def g(self):\n"
        "        return self._plan\n"
    )
    assert sorted(line for line, _ in violations(source, names)) == [1, 3, 3, 4]


def test_plugins_and_contrib_use_only_public_core_api():
    names = core_private_names()
    offenders = []
    for root in SCANNED:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(ROOT)
            for line, text in violations(path.read_text(encoding="utf-8"), names):
                offenders.append(f"{rel}:{line}: {text}")
    assert offenders == []
