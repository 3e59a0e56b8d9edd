"""The core never imports taskloom_std: checked here directly, and the import-linter
contract that CI runs must list every core module."""

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core" / "taskloom"


def core_modules():
    for path in sorted(CORE.rglob("*.py")):
        rel = path.relative_to(CORE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield path, ".".join(["taskloom", *parts])


def test_no_core_module_imports_plugins():
    offenders = []
    for path, name in core_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            offenders += [f"{name}: {t}" for t in targets if t.startswith("taskloom_std")]
    assert offenders == []


def test_import_linter_contracts_are_short_and_cover_the_core():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    forbidden, layers = config["tool"]["importlinter"]["contracts"]
    assert forbidden["source_modules"] == ["taskloom"]
    assert forbidden["forbidden_modules"] == ["taskloom_std"]
    assert layers["type"] == "layers"
    assert layers["layers"] == ["app", "api", "kernel"]
